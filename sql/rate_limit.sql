-- rate_limit: a GCRA token bucket per key, its state in shared memory (src/rate_limit.rs,
-- src/core/src/rate_limit.rs). Not STRICT: a NULL argument is an error (22004), and a NULL
-- burst means "as many as rate". One row, returned by a C function in value-per-call mode.
-- PARALLEL RESTRICTED: it changes shared state, so it runs in the leader only.
CREATE FUNCTION rate_limit(key text, rate int8, per interval, burst int8 DEFAULT NULL, cost int8 DEFAULT 1)
RETURNS TABLE (allowed bool, remaining int8, retry_after interval, reset_after interval)
    AS 'MODULE_PATHNAME', 'rate_limit' LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1;
COMMENT ON FUNCTION rate_limit(text, int8, interval, int8, int8) IS
    'take cost tokens from the key''s bucket (burst tokens, refilled at rate per per) if they are there';
-- The keys are one namespace per database, shared by every role that may call it: a role
-- could spend another's quota or fill the table. So nobody may until granted.
REVOKE ALL ON FUNCTION rate_limit(text, int8, interval, int8, int8) FROM PUBLIC;
