-- Least-privilege PostgreSQL set-up for Claude Nexus (see README, "PostgreSQL for teams").
--
-- Two roles: an owner that creates the schema, and the role the servers run as, which may only
-- read and write records. Step 0 runs once as a superuser; step 1 as the owner, in the
-- database, after every `claude-nexus migrate`; step 2 is optional.
--
-- Step 0 (superuser, once; choose your own passwords):
--   CREATE ROLE nexus_owner LOGIN PASSWORD 'owner-password';
--   CREATE ROLE nexus_app LOGIN PASSWORD 'app-password';
--   CREATE DATABASE nexus OWNER nexus_owner;
-- Then, as the owner:
--   DATABASE_URL=postgres://nexus_owner:owner-password@db-host/nexus?sslmode=require claude-nexus migrate
--   psql postgres://nexus_owner:owner-password@db-host/nexus?sslmode=require -f docs/postgres-grants.sql
-- And run every server with:
--   DATABASE_URL=postgres://nexus_app:app-password@db-host/nexus?sslmode=require claude-nexus serve

-- Step 1: connect, and read and write the records and client keys; nothing else (no DELETE, no DDL).
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO nexus_app', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO nexus_app;
GRANT SELECT, INSERT, UPDATE ON api_requests, streaming_chunks, usage_hourly, usage_daily TO nexus_app;
GRANT USAGE ON SEQUENCE streaming_chunks_id_seq TO nexus_app;
-- Client keys: servers read them and record their last use; `claude-nexus keys` (run with
-- the same DATABASE_URL) creates and revokes them. Keys are never deleted.
GRANT SELECT, INSERT, UPDATE ON client_keys TO nexus_app;
-- Their version, which every change to client_keys moves (a trigger) and servers poll.
GRANT SELECT, UPDATE ON client_keys_version TO nexus_app;
-- Limits and budgets: servers read them; `claude-nexus limits` and the dashboard set them.
GRANT SELECT, INSERT, UPDATE, DELETE ON limits TO nexus_app;
-- Conversation markers: written by the linker, deleted after 8 days by the retention task.
GRANT SELECT, INSERT, DELETE ON conversation_markers TO nexus_app;
-- `serve` checks that the schema is up to date before it starts.
GRANT SELECT ON _sqlx_migrations TO nexus_app;
-- Dashboard logins (when, from where, whether the key was right), for the security checklist.
GRANT SELECT, INSERT ON dashboard_logins TO nexus_app;
GRANT USAGE ON SEQUENCE dashboard_logins_id_seq TO nexus_app;

-- Step 2 (optional): let retention (RETENTION_DAYS, BODY_RETENTION_DAYS) delete old rows.
-- Without it the servers keep serving and /health reports retention "no_permission".
-- GRANT DELETE ON api_requests, streaming_chunks, usage_hourly, usage_daily, dashboard_logins TO nexus_app;
