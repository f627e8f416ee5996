-- SSH hosts as principals (`elevate admin host add`) and the sessions their helper
-- (`elevate host session`) reports, with the recording streamed in chunks.
CREATE TABLE hosts (
    tenant_id    BLOB NOT NULL,
    id           BLOB NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT,
    removed_at   TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX hosts_live_name ON hosts (tenant_id, name) WHERE removed_at IS NULL;

CREATE TABLE ssh_sessions (
    tenant_id        BLOB NOT NULL,
    id               BLOB NOT NULL,
    request_id       BLOB NOT NULL,
    host_id          BLOB NOT NULL,
    host_name        TEXT NOT NULL,
    principal        TEXT NOT NULL,
    serial           INTEGER NOT NULL,
    key_hash         BLOB NOT NULL,
    command          TEXT,
    pty              INTEGER NOT NULL,
    record_input     INTEGER NOT NULL,
    started_at       TEXT NOT NULL,
    last_seen_at     TEXT NOT NULL,
    ended_at         TEXT,
    end_reason       TEXT,
    bytes            INTEGER NOT NULL DEFAULT 0,
    chunks           INTEGER NOT NULL DEFAULT 0,
    recording_sha256 TEXT,
    purged_at        TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ssh_sessions_request ON ssh_sessions (tenant_id, request_id, started_at);
CREATE INDEX ssh_sessions_open ON ssh_sessions (tenant_id, last_seen_at) WHERE ended_at IS NULL;
CREATE INDEX ssh_sessions_ended ON ssh_sessions (tenant_id, ended_at) WHERE purged_at IS NULL;

CREATE TABLE session_chunks (
    tenant_id  BLOB NOT NULL,
    session_id BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, session_id, seq)
);

ALTER TABLE tenants ADD COLUMN recording_retention_days INTEGER NOT NULL DEFAULT 90;
