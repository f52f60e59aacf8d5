-- A version of the client keys that moves on every change that matters to a proxy: a key
-- created, deleted, revoked, un-revoked, or given another account, hash or expiry, by
-- `claude-nexus keys`, the dashboard, another instance or plain SQL. Servers poll it twice a
-- second and reload the keys when it moved. `last_used_at` updates (after every batch of
-- records) do not move it. The role that writes client keys needs UPDATE on it
-- (docs/postgres-grants.sql).
CREATE TABLE client_keys_version (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO client_keys_version (id, version) VALUES (1, 0);

CREATE FUNCTION client_keys_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE client_keys_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER client_keys_version_bump
AFTER INSERT OR DELETE OR UPDATE OF id, account, key_hash, expires_at, revoked_at ON client_keys
FOR EACH STATEMENT EXECUTE FUNCTION client_keys_version_bump();
