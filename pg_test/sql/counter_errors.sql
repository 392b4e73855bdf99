-- Counter errors read as one message: no CONTEXT lines from the extension's own
-- PL/pgSQL functions (psql shows CONTEXT for errors by default, as here), while a
-- user's own PL/pgSQL frames around the call stay.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS distributed_counter;
RESET client_min_messages;
\set VERBOSITY default
SELECT counter_create('errs');
-- Through the C fast path's general path (counter_add -> _counter_add_sql ->
-- _counter_missing -> _counter_check_name): four frames of ours.
SELECT counter_add('no_such', 'k');
SELECT counter_add('Bad Name', 'k');
SELECT counter_add('errs', NULL);
SELECT counter_add('errs', 'k', NULL);
SELECT counter_add('errs', repeat('k', 2001));
SELECT counter_add('errs', 'k', 1, repeat('r', 513));
-- The PL/pgSQL functions.
SELECT counter_value('no_such', 'k');
SELECT counter_values('no_such', ARRAY['k']);
SELECT counter_values('errs', NULL);
SELECT counter_create('errs');
SELECT counter_create('errs2', 0);
SELECT counter_set('errs', 'k', NULL);
SELECT counter_compact_batch('errs', 0);
SELECT counter_drop('no_such');
SELECT counter_add('errs', 'big', 9223372036854775807);
SELECT counter_add('errs', 'big', 1);
SELECT counter_value('errs', 'big');
SELECT counter_distribute();
-- A user's function keeps its own CONTEXT line, and only its own.
CREATE FUNCTION my_like(post text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    RETURN counter_add('my_likes', post);
END
$$;
SELECT my_like('p1');
-- Through the user's PERFORM (an SPI statement of theirs): their two lines stay.
CREATE FUNCTION my_view(post text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM counter_value('my_views', post);
END
$$;
SELECT my_view('p1');
DROP FUNCTION my_view(text);
-- Errors stay catchable, with their SQLSTATE, and the caller's context is whole after.
DO $$
BEGIN
    PERFORM counter_value('no_such', 'k');
EXCEPTION WHEN undefined_object THEN
    RAISE NOTICE 'caught %: %', SQLSTATE, SQLERRM;
END
$$;
SELECT my_like('p1');
\set VERBOSITY default
DROP FUNCTION my_like(text);
SELECT counter_drop('errs');
-- leave the database as this test found it (the next test creates the extension)
SET client_min_messages = warning;
DROP EXTENSION distributed_counter CASCADE;
RESET client_min_messages;
