-- elevate schema, PostgreSQL. Every table carries tenant_id and is isolated by row-level security
-- (see the end of this file).

CREATE TABLE tenants (
    tenant_id   UUID PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    id           UUID NOT NULL,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    roles        JSONB NOT NULL DEFAULT '[]',
    group_names  JSONB NOT NULL DEFAULT '[]',
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE sessions (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    user_id      UUID NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE signin_links (
    tenant_id     UUID NOT NULL REFERENCES tenants (tenant_id),
    id            UUID NOT NULL,
    email         TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL UNIQUE,
    browser_nonce_hash BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    ip            TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE api_tokens (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    user_id      UUID NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    scopes       JSONB NOT NULL DEFAULT '[]',
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE policy_versions (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    version    BIGINT NOT NULL,
    source     TEXT NOT NULL,
    digest     BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE profiles (
    tenant_id  UUID NOT NULL,
    version    BIGINT NOT NULL,
    name       TEXT NOT NULL,
    spec       JSONB NOT NULL,
    PRIMARY KEY (tenant_id, version, name),
    FOREIGN KEY (tenant_id, version) REFERENCES policy_versions (tenant_id, version)
);

CREATE TABLE targets (
    tenant_id           UUID NOT NULL REFERENCES tenants (tenant_id),
    id                  UUID NOT NULL,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('postgres', 'mysql')),
    url                 TEXT NOT NULL,
    admin_secret_sealed BYTEA NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE requests (
    tenant_id      UUID NOT NULL,
    id             UUID NOT NULL,
    requester_id   UUID NOT NULL,
    profile_name   TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    state          TEXT NOT NULL,
    duration_secs  BIGINT NOT NULL,
    justification  TEXT NOT NULL,
    ticket         TEXT,
    ssh_public_key TEXT,
    starts_at      TIMESTAMPTZ,
    pending_until  TIMESTAMPTZ NOT NULL,
    break_glass    BOOLEAN NOT NULL DEFAULT FALSE,
    auto_approved  BOOLEAN NOT NULL DEFAULT FALSE,
    reviewed_by    UUID,
    reviewed_at    TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, requester_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, policy_version) REFERENCES policy_versions (tenant_id, version)
);
CREATE INDEX requests_state ON requests (tenant_id, state);

CREATE TABLE approvals (
    tenant_id   UUID NOT NULL,
    id          UUID NOT NULL,
    request_id  UUID NOT NULL,
    round       BIGINT NOT NULL DEFAULT 0,
    approver_id UUID NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment     TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, request_id, round, approver_id),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id),
    FOREIGN KEY (tenant_id, approver_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE grants (
    tenant_id    UUID NOT NULL,
    request_id   UUID NOT NULL,
    activated_at TIMESTAMPTZ NOT NULL,
    not_before   TIMESTAMPTZ NOT NULL,
    not_after    TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    end_reason   TEXT,
    PRIMARY KEY (tenant_id, request_id),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id)
);

CREATE TABLE credentials (
    tenant_id        UUID NOT NULL,
    id               UUID NOT NULL,
    request_id       UUID NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ssh_cert', 'db_role')),
    serial           BIGINT,
    key_id           TEXT,
    fingerprint      TEXT,
    principals       JSONB,
    target_name      TEXT,
    role_name        TEXT,
    valid_after      TIMESTAMPTZ NOT NULL,
    valid_before     TIMESTAMPTZ NOT NULL,
    revoked_at       TIMESTAMPTZ,
    cleaned_up_at    TIMESTAMPTZ,
    cleanup_attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, kind, serial),
    FOREIGN KEY (tenant_id, request_id) REFERENCES requests (tenant_id, id)
);

CREATE TABLE ca_keys (
    tenant_id      UUID NOT NULL REFERENCES tenants (tenant_id),
    id             UUID NOT NULL,
    purpose        TEXT NOT NULL CHECK (purpose IN ('ssh_user_ca', 'audit_signing')),
    public_key     TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    retired_at     TIMESTAMPTZ,
    publish_until  TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ca_keys_one_active ON ca_keys (tenant_id, purpose) WHERE active;

CREATE TABLE audit_events (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    seq        BIGINT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    request_id UUID,
    ip         TEXT,
    user_agent TEXT,
    details    JSONB NOT NULL,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE audit_checkpoints (
    tenant_id      UUID NOT NULL REFERENCES tenants (tenant_id),
    seq            BIGINT NOT NULL,
    head_hash      BYTEA NOT NULL,
    signature      BYTEA NOT NULL,
    signing_key_id UUID NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE webhooks (
    tenant_id     UUID NOT NULL REFERENCES tenants (tenant_id),
    id            UUID NOT NULL,
    url           TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    events        JSONB NOT NULL DEFAULT '[]',
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE notification_outbox (
    tenant_id       UUID NOT NULL REFERENCES tenants (tenant_id),
    id              UUID NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient       TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    last_error      TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE sent_at IS NULL;
