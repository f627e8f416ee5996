-- elevate schema, SQLite. Every table carries tenant_id; the store API puts it in every query.
-- Ids are UUID blobs, times RFC 3339 UTC text at whole seconds (sortable), JSON as text.

CREATE TABLE tenants (
    tenant_id   BLOB PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    id           BLOB NOT NULL,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    roles        TEXT NOT NULL DEFAULT '[]',
    group_names  TEXT NOT NULL DEFAULT '[]',
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE sessions (
    tenant_id    BLOB NOT NULL,
    id           BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE signin_links (
    tenant_id     BLOB NOT NULL REFERENCES tenants (tenant_id),
    id            BLOB NOT NULL,
    email         TEXT NOT NULL,
    secret_hash   BLOB NOT NULL UNIQUE,
    browser_nonce_hash BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT,
    ip            TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE api_tokens (
    tenant_id    BLOB NOT NULL,
    id           BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    scopes       TEXT NOT NULL DEFAULT '[]',
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE policy_versions (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    version    INTEGER NOT NULL,
    source     TEXT NOT NULL,
    digest     BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE profiles (
    tenant_id  BLOB NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version, name),
    FOREIGN KEY (tenant_id, version) REFERENCES policy_versions (tenant_id, version)
);

CREATE TABLE targets (
    tenant_id           BLOB NOT NULL REFERENCES tenants (tenant_id),
    id                  BLOB NOT NULL,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('postgres', 'mysql')),
    url                 TEXT NOT NULL,
    admin_secret_sealed BLOB NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE requests (
    tenant_id      BLOB NOT NULL,
    id             BLOB NOT NULL,
    requester_id   BLOB NOT NULL,
    profile_name   TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    state          TEXT NOT NULL,
    duration_secs  INTEGER NOT NULL,
    justification  TEXT NOT NULL,
    ticket         TEXT,
    ssh_public_key TEXT,
    starts_at      TEXT,
    pending_until  TEXT NOT NULL,
    break_glass    BOOLEAN NOT NULL DEFAULT FALSE,
    auto_approved  BOOLEAN NOT NULL DEFAULT FALSE,
    reviewed_by    BLOB,
    reviewed_at    TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, requester_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_version) REFERENCES policy_versions (tenant_id, version)
);
CREATE INDEX requests_state ON requests (tenant_id, state);

CREATE TABLE approvals (
    tenant_id   BLOB NOT NULL,
    id          BLOB NOT NULL,
    request_id  BLOB NOT NULL,
    round       INTEGER NOT NULL DEFAULT 0,
    approver_id BLOB NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment     TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, request_id, round, approver_id),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id),
    FOREIGN KEY (tenant_id, approver_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE grants (
    tenant_id    BLOB NOT NULL,
    request_id   BLOB NOT NULL,
    activated_at TEXT NOT NULL,
    not_before   TEXT NOT NULL,
    not_after    TEXT NOT NULL,
    ended_at     TEXT,
    end_reason   TEXT,
    PRIMARY KEY (tenant_id, request_id),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id)
);

CREATE TABLE credentials (
    tenant_id        BLOB NOT NULL,
    id               BLOB NOT NULL,
    request_id       BLOB NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ssh_cert', 'db_role')),
    serial           INTEGER,
    key_id           TEXT,
    fingerprint      TEXT,
    principals       TEXT,
    target_name      TEXT,
    role_name        TEXT,
    valid_after      TEXT NOT NULL,
    valid_before     TEXT NOT NULL,
    revoked_at       TEXT,
    cleaned_up_at    TEXT,
    cleanup_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, kind, serial),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id)
);

CREATE TABLE ca_keys (
    tenant_id      BLOB NOT NULL REFERENCES tenants (tenant_id),
    id             BLOB NOT NULL,
    purpose        TEXT NOT NULL CHECK (purpose IN ('ssh_user_ca', 'audit_signing')),
    public_key     TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    publish_until  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ca_keys_one_active ON ca_keys (tenant_id, purpose) WHERE active;

CREATE TABLE audit_events (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    request_id BLOB,
    ip         TEXT,
    user_agent TEXT,
    details    TEXT NOT NULL,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
-- Append-only, as the Postgres grants make it there.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

CREATE TABLE audit_checkpoints (
    tenant_id      BLOB NOT NULL REFERENCES tenants (tenant_id),
    seq            INTEGER NOT NULL,
    head_hash      BLOB NOT NULL,
    signature      BLOB NOT NULL,
    signing_key_id BLOB NOT NULL,
    at             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE webhooks (
    tenant_id     BLOB NOT NULL REFERENCES tenants (tenant_id),
    id            BLOB NOT NULL,
    url           TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    events        TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE notification_outbox (
    tenant_id       BLOB NOT NULL REFERENCES tenants (tenant_id),
    id              BLOB NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    sent_at         TEXT,
    last_error      TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE sent_at IS NULL;
