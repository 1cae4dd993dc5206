-- Appending one fresh day %(day)s (before active_rolling_30d_add.sql, which counts from the
-- result): %(day)s becomes its users' latest active day, and the users with no activity in
-- the 30 days ending on it leave the table. Rewritten whole, in one go: most of its rows
-- change every night, and writing them anew costs less than updating each in place. The
-- new rows go to a new table, which then takes the old one's place (no key to maintain:
-- migration 008). The day's rows are read from user_visits_daily.
CREATE TABLE tchap_stats.rolling_last_active_next
    (LIKE tchap_stats.rolling_last_active INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO tchap_stats.rolling_last_active_next
    (user_id, instance, domain, last_day, last_web, last_mobile, last_other)
SELECT user_id, instance, domain,
       CASE WHEN t.user_id IS NULL THEN l.last_day ELSE %(day)s::date END,
       CASE WHEN t.web THEN %(day)s::date ELSE l.last_web END,
       CASE WHEN t.mobile THEN %(day)s::date ELSE l.last_mobile END,
       CASE WHEN t.other THEN %(day)s::date ELSE l.last_other END
FROM tchap_stats.rolling_last_active AS l
FULL JOIN (SELECT user_id, instance, domain, web_visits_count > 0 AS web,
                  mobile_visits_count > 0 AS mobile, other_visits_count > 0 AS other
           FROM tchap_stats.user_visits_daily
           WHERE day = %(day)s) AS t USING (user_id, instance, domain)
WHERE t.user_id IS NOT NULL OR l.last_day > %(day)s::date - 30;
DROP TABLE tchap_stats.rolling_last_active;
ALTER TABLE tchap_stats.rolling_last_active_next RENAME TO rolling_last_active;
UPDATE tchap_stats.rolling_state SET through_day = %(day)s;
