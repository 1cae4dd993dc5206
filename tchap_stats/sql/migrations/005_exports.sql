-- The other exports' tables (DESIGN §2, §4), with the old tables' names, columns and types
-- (DESIGN §8) so existing Metabase questions keep working; what is new is commented.
-- Partitioned tables get their month partitions on demand from the loader; the loader
-- enforces their keys (sql/load/). The unpartitioned ones have their key as primary key.

-- Hourly counts. Partitions: months of `hour` in the configured zone (the loader creates
-- them with the zone's midnights as bounds).
CREATE TABLE public.subscriptions_aggregate (
    subscriptions integer     NOT NULL,
    domain        varchar     NOT NULL,
    hour          timestamptz NOT NULL,
    instance      varchar     NOT NULL,
    extracted_on  date        NOT NULL
) PARTITION BY RANGE (hour);
CREATE INDEX subscriptions_aggregate_hour_idx ON public.subscriptions_aggregate (hour);
COMMENT ON COLUMN public.subscriptions_aggregate.extracted_on IS
    'extraction date of the file the row comes from: of two files holding a key, the later extraction wins';

CREATE TABLE public.events_aggregate (
    events        integer     NOT NULL,
    domain        varchar     NOT NULL,
    hour          timestamptz NOT NULL,
    instance      varchar     NOT NULL,
    type          varchar     NOT NULL,
    extracted_on  date        NOT NULL
) PARTITION BY RANGE (hour);
CREATE INDEX events_aggregate_hour_idx ON public.events_aggregate (hour);
COMMENT ON COLUMN public.events_aggregate.extracted_on IS
    'extraction date of the file the row comes from: of two files holding a key, the later extraction wins';

-- Current account data: one row per (user, type), the latest extraction's.
CREATE TABLE public.account_data_aggregate (
    user_id           varchar NOT NULL,
    account_data_type varchar NOT NULL,
    content           varchar NOT NULL,
    instance          varchar NOT NULL,
    domain            varchar NOT NULL,
    extracted_on      date    NOT NULL,
    PRIMARY KEY (user_id, account_data_type)
);
COMMENT ON COLUMN public.account_data_aggregate.extracted_on IS
    'extraction date of the file the row comes from: of two files holding a key, the later extraction wins';

-- One snapshot per extraction day (added_date: the file's date, not the load's).
CREATE TABLE public.sso_aggregate (
    total_users          integer NOT NULL,
    domain               varchar NOT NULL,
    instance             varchar NOT NULL,
    only_pwd             integer NOT NULL,
    pwd_and_prococonnect integer NOT NULL,
    only_proconnect      integer NOT NULL,
    added_date           date    NOT NULL
) PARTITION BY RANGE (added_date);
CREATE INDEX sso_aggregate_added_date_idx ON public.sso_aggregate (added_date);

-- Support conversations' segments; created_at and updated_at stay `timestamp` (without
-- zone) as in the old table: the wall-clock time in the configured zone.
CREATE TABLE public.crisp_conversation_segments (
    session_id varchar   NOT NULL,
    segment    varchar   NOT NULL,
    state      varchar   NOT NULL,
    domain     varchar   NOT NULL,
    created_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    PRIMARY KEY (session_id, segment)
);

-- Push registrations, one (large) snapshot per extraction day.
CREATE TABLE public.pushers_aggregate (
    user_name  varchar NOT NULL,
    device_id  varchar NOT NULL,
    app_id     varchar NOT NULL,
    kind       varchar NOT NULL,
    is_enabled boolean NOT NULL,
    instance   varchar NOT NULL,
    domain     varchar NOT NULL,
    added_date date    NOT NULL
) PARTITION BY RANGE (added_date);
CREATE INDEX pushers_aggregate_added_date_brin
    ON public.pushers_aggregate USING brin (added_date) WITH (pages_per_range = 32, autosummarize = on);
