-- The summaries are refreshed in two groups that read nothing the other writes, each in a
-- transaction of its own, side by side on two connections (summaries.GROUPS):
--   daily    user_visits_daily, active_daily, active_rolling_30d (and rolling_last_active)
--   monthly  user_devices_monthly, active_monthly, user_months
-- A refresh first hands the days loads changed (changed_days) out to each group's queue,
-- here, in one transaction; each group then consumes its own rows in the transaction that
-- rewrites its summaries. A group that fails keeps its days for the next refresh, whatever
-- the other did. Queued rows merge as changed_days rows do: `fresh` stays as the group
-- first found the day, `rewritten` accumulates, last_load_id is the latest load's.
CREATE TABLE tchap_stats.summary_queue (
    summary_group text        NOT NULL CHECK (summary_group IN ('daily', 'monthly')),
    day           date        NOT NULL,
    last_load_id  bigint      NOT NULL,
    fresh         boolean     NOT NULL,
    rewritten     boolean     NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (summary_group, day)
);
