-- Rate limit counters (guide 1.6.1), shared by every gateway replica.
--
-- One leaky bucket per (user, limit), measured in seconds: ``level`` seconds were in the
-- bucket at ``updated_at`` and it drains one second per second since. The gateway names the
-- limit by a key derived from the rule (shared/rate_limits.py), so replicas configured alike
-- share the counters.

CREATE TABLE rate_limit_counters (
    user_id     text NOT NULL,
    limit_key   text NOT NULL,
    level       double precision NOT NULL CHECK (level >= 0),
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, limit_key)
);

-- Take one request's worth from every bucket of ``p_keys`` for ``p_user``, all or nothing:
-- the buckets are charged only if every one of them has room, so a refused request costs
-- nothing. Returns, per key, the level after draining (before this request) and the seconds
-- until the request would fit (0 = it fitted). The rows are locked in key order, so
-- concurrent requests of one user, from any gateway, are decided one after the other and
-- never deadlock.
CREATE FUNCTION stratus_rate_limit_take(
    p_user text, p_keys text[], p_costs double precision[], p_capacities double precision[]
) RETURNS TABLE (limit_key text, level double precision, delay double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    moment timestamptz;
BEGIN
    INSERT INTO rate_limit_counters AS c (user_id, limit_key, level, updated_at)
    SELECT p_user, k.key, 0, clock_timestamp() FROM unnest(p_keys) AS k(key) ORDER BY k.key
    ON CONFLICT DO NOTHING;

    PERFORM 1 FROM rate_limit_counters c
     WHERE c.user_id = p_user AND c.limit_key = ANY (p_keys)
     ORDER BY c.limit_key
       FOR UPDATE;
    moment := clock_timestamp();  -- after the locks: not earlier than any holder's update

    RETURN QUERY
    WITH state AS (
        SELECT r.key, r.cost, d.drained,
               GREATEST(d.drained + r.cost - r.capacity - 1e-9, 0) AS wait
          FROM unnest(p_keys, p_costs, p_capacities) AS r(key, cost, capacity)
          JOIN rate_limit_counters c ON c.user_id = p_user AND c.limit_key = r.key
         CROSS JOIN LATERAL (
               SELECT GREATEST(c.level - GREATEST(EXTRACT(EPOCH FROM moment - c.updated_at), 0),
                               0)::double precision AS drained
               ) d
    ), charged AS (
        UPDATE rate_limit_counters c
           SET level = s.drained + s.cost, updated_at = moment
          FROM state s
         WHERE c.user_id = p_user AND c.limit_key = s.key
           AND NOT EXISTS (SELECT 1 FROM state refused WHERE refused.wait > 0)
    )
    SELECT s.key, s.drained, s.wait::double precision FROM state s;
END $$;
