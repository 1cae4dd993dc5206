-- Folds the grown days' new visits into tchap_stats.rolling_last_active (the state the
-- next appended day starts from): each (user, instance, domain)'s latest active day, overall
-- and per platform, moves up to a grown day within the 30 days ending on the latest day
-- summarised (rolling_state.through_day); a triple it does not hold yet is added.
CREATE TEMP TABLE late_last_active ON COMMIT DROP AS
SELECT user_id, instance, domain, max(visit_date) AS last_day,
       max(visit_date) FILTER (WHERE platform = 'Web') AS last_web,
       max(visit_date) FILTER (WHERE platform = 'Mobile') AS last_mobile,
       max(visit_date) FILTER (WHERE platform = 'Autre') AS last_other
FROM tchap_stats.late_rows
WHERE summary_group = 'daily' AND new_key AND visit_date = ANY(%(days)s::date[])
  AND visit_date > (SELECT through_day FROM tchap_stats.rolling_state) - 30
GROUP BY 1, 2, 3;
UPDATE tchap_stats.rolling_last_active AS r
SET last_day = greatest(r.last_day, n.last_day), last_web = greatest(r.last_web, n.last_web),
    last_mobile = greatest(r.last_mobile, n.last_mobile),
    last_other = greatest(r.last_other, n.last_other)
FROM late_last_active AS n
WHERE r.user_id = n.user_id AND r.instance = n.instance AND r.domain = n.domain;
INSERT INTO tchap_stats.rolling_last_active
    (user_id, instance, domain, last_day, last_web, last_mobile, last_other)
SELECT n.user_id, n.instance, n.domain, n.last_day, n.last_web, n.last_mobile, n.last_other
FROM late_last_active AS n
WHERE NOT EXISTS (SELECT FROM tchap_stats.rolling_last_active AS r
                  WHERE r.user_id = n.user_id AND r.instance = n.instance
                    AND r.domain = n.domain);
