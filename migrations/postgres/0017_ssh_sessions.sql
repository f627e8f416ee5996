-- SSH hosts as principals (`elevate admin host add`) and the sessions their helper
-- (`elevate host session`) reports, with the recording streamed in chunks.
CREATE TABLE hosts (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ,
    removed_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX hosts_live_name ON hosts (tenant_id, name) WHERE removed_at IS NULL;

CREATE TABLE ssh_sessions (
    tenant_id        UUID NOT NULL,
    id               UUID NOT NULL,
    request_id       UUID NOT NULL,
    host_id          UUID NOT NULL,
    host_name        TEXT NOT NULL,
    principal        TEXT NOT NULL,
    serial           BIGINT NOT NULL,
    key_hash         BYTEA NOT NULL,
    command          TEXT,
    pty              BOOLEAN NOT NULL,
    record_input     BOOLEAN NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    ended_at         TIMESTAMPTZ,
    end_reason       TEXT,
    bytes            BIGINT NOT NULL DEFAULT 0,
    chunks           INTEGER NOT NULL DEFAULT 0,
    recording_sha256 TEXT,
    purged_at        TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ssh_sessions_request ON ssh_sessions (tenant_id, request_id, started_at);
CREATE INDEX ssh_sessions_open ON ssh_sessions (tenant_id, last_seen_at) WHERE ended_at IS NULL;
CREATE INDEX ssh_sessions_ended ON ssh_sessions (tenant_id, ended_at) WHERE purged_at IS NULL;

CREATE TABLE session_chunks (
    tenant_id  UUID NOT NULL,
    session_id UUID NOT NULL,
    seq        INTEGER NOT NULL,
    data       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, session_id, seq)
);

ALTER TABLE tenants ADD COLUMN recording_retention_days INTEGER NOT NULL DEFAULT 90;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['hosts', 'ssh_sessions', 'session_chunks'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO elevate_app', t);
        EXECUTE format('ALTER TABLE %I OWNER TO elevate_owner', t);
    END LOOP;
END $$;
