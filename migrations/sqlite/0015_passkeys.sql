-- Passkeys (issue 14): see the Postgres migration of the same number.
CREATE TABLE passkeys (
    tenant_id     BLOB NOT NULL,
    id            BLOB NOT NULL,
    user_id       BLOB NOT NULL,
    credential_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, credential_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX passkeys_by_user ON passkeys (tenant_id, user_id);

CREATE TABLE webauthn_ceremonies (
    tenant_id  BLOB NOT NULL,
    id         BLOB NOT NULL,
    user_id    BLOB,
    purpose    TEXT NOT NULL CHECK (purpose IN ('register', 'sign_in', 'step_up')),
    binding    TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Break-glass always needs the requester's passkey step-up when they have one; with this on,
-- also when they have none (they are told to register one).
ALTER TABLE tenants ADD COLUMN require_passkey_for_break_glass INTEGER NOT NULL DEFAULT 0;

-- Admin changes from a browser need a passkey confirmation in the last five minutes, from admins
-- who have a passkey and, with this on, from every admin.
ALTER TABLE tenants ADD COLUMN require_passkey_for_admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN stepped_up_at TEXT;

-- Two people for policy changes that widen access: with `policy_two_person` on, such a version
-- waits here until a second admin approves it with a passkey step-up.
ALTER TABLE tenants ADD COLUMN policy_two_person INTEGER NOT NULL DEFAULT 0;
CREATE TABLE policy_proposals (
    tenant_id    BLOB NOT NULL,
    id           BLOB NOT NULL,
    -- The version in force when it was proposed: approving applies it only on top of that one.
    base_version BIGINT NOT NULL,
    source       TEXT NOT NULL,
    digest       BLOB NOT NULL,
    widening     TEXT NOT NULL,
    proposed_by  TEXT NOT NULL,
    proposer_id  BLOB,
    state        TEXT NOT NULL CHECK (state IN ('proposed', 'applied', 'rejected', 'superseded')),
    decided_by   TEXT,
    created_at   TEXT NOT NULL,
    decided_at   TEXT,
    PRIMARY KEY (tenant_id, id)
);

-- `elevate login` without a token (RFC 8628 device authorization): the CLI polls with the device
-- code (stored hashed) while a signed-in person approves the user code on /device.
CREATE TABLE device_grants (
    tenant_id        BLOB NOT NULL,
    id               BLOB NOT NULL,
    device_code_hash BLOB NOT NULL UNIQUE,
    user_code        TEXT NOT NULL,
    client           TEXT NOT NULL,
    ip               TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'used')),
    user_id          BLOB,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    last_polled_at   TEXT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_code)
);

ALTER TABLE approvals ADD COLUMN stepped_up INTEGER NOT NULL DEFAULT 0;
