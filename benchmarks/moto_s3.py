"""An S3 endpoint for the benchmarks: a moto server on loopback with one bucket."""

from __future__ import annotations

import logging

from tchap_stats.config import S3Settings
from tchap_stats.source import s3_client


def start_bucket(bucket: str = "bench"):  # -> (ThreadedMotoServer, S3Settings, endpoint URL)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Settings(bucket=None, access_key_id="bench", secret_access_key="bench",
                    endpoint=f"{host}:{port}", region="us-east-1", url_style="path",
                    use_ssl=False)
    s3_client(s3).create_bucket(Bucket=bucket)
    return server, s3, f"http://{host}:{port}"
