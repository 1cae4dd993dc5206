-- Adds to tchap_stats.user_visits_daily the visits loads added to the grown days %(days)s
-- (tchap_stats.late_rows, new keys: each a device new to its day), rather than re-reading
-- the days whole: each (day, user, instance, domain) row held gains them, the others are
-- added. Rows are reached by (day, user hash) (migration 017).
CREATE TEMP TABLE late_visits ON COMMIT DROP AS
SELECT visit_date AS day, user_id, instance, domain, count(*) AS visits,
       count(*) FILTER (WHERE platform = 'Web') AS web,
       count(*) FILTER (WHERE platform = 'Mobile') AS mobile,
       count(*) FILTER (WHERE platform = 'Autre') AS other
FROM tchap_stats.late_rows
WHERE summary_group = 'daily' AND new_key AND visit_date = ANY(%(days)s::date[])
GROUP BY 1, 2, 3, 4;
UPDATE tchap_stats.user_visits_daily AS v
SET visits_count = v.visits_count + n.visits,
    web_visits_count = v.web_visits_count + n.web,
    mobile_visits_count = v.mobile_visits_count + n.mobile,
    other_visits_count = v.other_visits_count + n.other
FROM late_visits AS n
WHERE v.day = n.day
  AND hashtextextended(v.user_id, 0) = hashtextextended(n.user_id, 0)
  AND v.user_id = n.user_id AND v.instance = n.instance
  AND v.domain = n.domain;
INSERT INTO tchap_stats.user_visits_daily (day, user_id, instance, domain, visits_count,
                                           web_visits_count, mobile_visits_count,
                                           other_visits_count)
SELECT n.day, n.user_id, n.instance, n.domain, n.visits, n.web, n.mobile, n.other
FROM late_visits AS n
WHERE NOT EXISTS (SELECT FROM tchap_stats.user_visits_daily AS v
                  WHERE v.day = n.day
                    AND hashtextextended(v.user_id, 0) = hashtextextended(n.user_id, 0)
                    AND v.user_id = n.user_id AND v.instance = n.instance
                    AND v.domain = n.domain);
