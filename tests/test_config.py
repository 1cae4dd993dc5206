"""Settings from the environment (DESIGN §6) and the masking of secrets."""

from __future__ import annotations

import pytest

from tchap_stats.config import ConfigError, S3Settings, Settings, mask

S3_VARIABLES = ["S3_BUCKET_NAME", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_ENDPOINT",
                "S3_REGION", "S3_URL_STYLE", "S3_USE_SSL"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in S3_VARIABLES + ["DATABASE_URL", "TCHAP_STATS_SOURCE"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- mask --------------------------------------------------------------------------------

def test_mask_hides_a_database_url_password():
    text = ('connection to postgresql://tchap:SuperSecret42@db.example.org:5432/stats failed; '
            'retrying postgres://admin:Other-Pw_9@10.0.0.1/x')
    masked = mask(text)
    assert "SuperSecret42" not in masked and "Other-Pw_9" not in masked
    # What is not secret stays readable.
    assert "postgresql://tchap:***@db.example.org:5432/stats" in masked
    assert "postgres://admin:***@10.0.0.1/x" in masked


def test_mask_hides_the_given_secrets_wherever_they_are():
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    text = f"403 Forbidden signing with {secret} for bucket exports ({secret[:4]} ok)"
    masked = mask(text, [secret, "AKIAEXAMPLE"])
    assert secret not in masked
    assert masked.startswith("403 Forbidden signing with *** for bucket exports")
    assert mask("key AKIAEXAMPLE and AKIAEXAMPLE2", ["AKIAEXAMPLE"]).count("AKIAEXAMPLE") == 0


def test_mask_hides_the_longest_secret_first():
    # One secret inside another must not leave the rest of the longer one visible.
    assert mask("token abcdef123456", ["abc", "abcdef123456"]) == "token ***"


@pytest.mark.parametrize("text, hidden", [
    ("host=db port=5432 password=hunter2 dbname=stats", "hunter2"),
    ("host=db password='hunter2' user=u", "hunter2"),
    ("PASSWORD: hunter2", "hunter2"),
    ("password = hunter2", "hunter2"),
    ("secret_access_key=abcDEF123", "abcDEF123"),
    ("Secret: abcDEF123, region gra", "abcDEF123"),
    ("password='two words' user=u", "words"),
    ('password="two words" user=u', "words"),
    ("PGPASSWORD=hunter2 psql", "hunter2"),
    ("S3_SECRET_ACCESS_KEY=abc123 tchap-stats sync", "abc123"),
    ('{"password": "hunter2", "user": "u"}', "hunter2"),
])
def test_mask_hides_password_spellings(text, hidden):
    masked = mask(text)
    assert hidden not in masked
    assert "***" in masked


def test_mask_leaves_ordinary_text_alone():
    text = "user_daily_visits_2024-11-14.csv: read 2 · loaded 2 · s3://exports/daily"
    assert mask(text, []) == text


def test_settings_secrets_include_the_database_password_and_s3_keys(clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://tchap:SuperSecret42@db:5432/stats")
    clean_env.setenv("S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
    clean_env.setenv("S3_SECRET_ACCESS_KEY", "AnotherSecret99")
    settings = Settings.from_env()
    assert set(settings.secrets()) == {"SuperSecret42", "AnotherSecret99", "AKIAEXAMPLE"}
    message = "postgres said no to tchap (password SuperSecret42); s3 key AnotherSecret99"
    masked = mask(message, settings.secrets())
    assert "SuperSecret42" not in masked and "AnotherSecret99" not in masked


def test_settings_without_secrets_has_none(clean_env):
    assert Settings.from_env().secrets() == []


# --- S3Settings.from_env -----------------------------------------------------------------

def test_s3_defaults_are_ovh_gra(clean_env):
    s3 = S3Settings.from_env()
    assert (s3.endpoint, s3.region, s3.url_style, s3.use_ssl) == (
        "s3.gra.cloud.ovh.net", "gra", "vhost", True)
    assert s3.endpoint_url == "https://s3.gra.cloud.ovh.net"
    assert (s3.bucket, s3.access_key_id, s3.secret_access_key) == (None, None, None)


def test_s3_old_variable_names_are_read(clean_env):
    clean_env.setenv("S3_BUCKET_NAME", "tchap-exports")
    clean_env.setenv("S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
    clean_env.setenv("S3_SECRET_ACCESS_KEY", "AnotherSecret99")
    clean_env.setenv("S3_REGION", "sbg")
    s3 = S3Settings.from_env()
    assert (s3.bucket, s3.access_key_id, s3.secret_access_key, s3.region) == (
        "tchap-exports", "AKIAEXAMPLE", "AnotherSecret99", "sbg")


def test_s3_endpoint_with_http_scheme_turns_ssl_off(clean_env):
    clean_env.setenv("S3_ENDPOINT", "http://127.0.0.1:9000")
    clean_env.setenv("S3_URL_STYLE", "path")
    s3 = S3Settings.from_env()
    assert (s3.endpoint, s3.use_ssl, s3.url_style) == ("127.0.0.1:9000", False, "path")
    assert s3.endpoint_url == "http://127.0.0.1:9000"


def test_s3_endpoint_with_https_scheme(clean_env):
    clean_env.setenv("S3_ENDPOINT", "https://s3.sbg.io.cloud.ovh.net/")
    s3 = S3Settings.from_env()
    assert (s3.endpoint, s3.use_ssl) == ("s3.sbg.io.cloud.ovh.net", True)
    assert s3.endpoint_url == "https://s3.sbg.io.cloud.ovh.net"


def test_s3_endpoint_as_a_plain_host(clean_env):
    clean_env.setenv("S3_ENDPOINT", "minio.internal:9000")
    s3 = S3Settings.from_env()
    assert (s3.endpoint, s3.use_ssl) == ("minio.internal:9000", True)
    assert s3.endpoint_url == "https://minio.internal:9000"
    clean_env.setenv("S3_USE_SSL", "false")
    assert S3Settings.from_env().endpoint_url == "http://minio.internal:9000"


@pytest.mark.parametrize("style", ["virtual", "dns", "path-style"])
def test_a_bad_url_style_is_a_config_error(clean_env, style):
    clean_env.setenv("S3_URL_STYLE", style)
    with pytest.raises(ConfigError, match="S3_URL_STYLE"):
        S3Settings.from_env()


def test_a_bad_endpoint_scheme_or_ssl_flag_is_a_config_error(clean_env):
    clean_env.setenv("S3_ENDPOINT", "ftp://s3.example.org")
    with pytest.raises(ConfigError, match="S3_ENDPOINT"):
        S3Settings.from_env()
    clean_env.setenv("S3_ENDPOINT", "s3.example.org")
    clean_env.setenv("S3_USE_SSL", "maybe")
    with pytest.raises(ConfigError, match="S3_USE_SSL"):
        S3Settings.from_env()


def test_an_unparseable_database_url_still_gives_settings(clean_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@[bad/db")
    assert Settings.from_env().secrets() == []
    assert "pw" not in mask("connecting with password=pw failed")


def test_preaggregation_is_on_unless_turned_off(clean_env):
    clean_env.delenv("TCHAP_STATS_PREAGGREGATE", raising=False)
    assert Settings.from_env().preaggregate is True
    clean_env.setenv("TCHAP_STATS_PREAGGREGATE", "false")
    assert Settings.from_env().preaggregate is False
    clean_env.setenv("TCHAP_STATS_PREAGGREGATE", "sometimes")
    with pytest.raises(ConfigError, match="TCHAP_STATS_PREAGGREGATE"):
        Settings.from_env()


def test_a_short_secret_is_masked_where_it_is_a_password_not_in_every_word():
    secrets = ["tchap"]  # a database password that is also the tool's name
    assert mask("run `tchap-stats migrate-legacy`", secrets) == "run `tchap-stats migrate-legacy`"
    assert mask("postgresql://tchap:tchap@db/tchap failed", secrets) == (
        "postgresql://tchap:***@db/tchap failed")
    assert mask("password=tchap host=db", secrets) == "password=*** host=db"
