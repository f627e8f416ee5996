-- Passkeys (issue 14): a person's WebAuthn credentials, the server-side state of ceremonies in
-- progress (never a client cookie), and which approvals were made with a passkey step-up.
CREATE TABLE passkeys (
    tenant_id     UUID NOT NULL,
    id            UUID NOT NULL,
    user_id       UUID NOT NULL,
    -- base64url of the credential id, as browsers and assertions name it.
    credential_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- webauthn-rs's Passkey (public key, algorithm, counter): no secret, but never audited.
    passkey       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, credential_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX passkeys_by_user ON passkeys (tenant_id, user_id);

CREATE TABLE webauthn_ceremonies (
    tenant_id  UUID NOT NULL,
    id         UUID NOT NULL,
    -- NULL for a sign-in, where the passkey names the person.
    user_id    UUID,
    purpose    TEXT NOT NULL CHECK (purpose IN ('register', 'sign_in', 'step_up')),
    -- What the assertion is for: a digest of the request as the approver saw it, or an action.
    binding    TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Break-glass always needs the requester's passkey step-up when they have one; with this on,
-- also when they have none (they are told to register one).
ALTER TABLE tenants ADD COLUMN require_passkey_for_break_glass BOOLEAN NOT NULL DEFAULT false;

-- Admin changes from a browser need a passkey confirmation in the last five minutes, from admins
-- who have a passkey and, with this on, from every admin.
ALTER TABLE tenants ADD COLUMN require_passkey_for_admin BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE sessions ADD COLUMN stepped_up_at TIMESTAMPTZ;

-- Two people for policy changes that widen access: with `policy_two_person` on, such a version
-- waits here until a second admin approves it with a passkey step-up.
ALTER TABLE tenants ADD COLUMN policy_two_person BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE policy_proposals (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    -- The version in force when it was proposed: approving applies it only on top of that one.
    base_version BIGINT NOT NULL,
    source       TEXT NOT NULL,
    digest       BYTEA NOT NULL,
    widening     TEXT NOT NULL,
    proposed_by  TEXT NOT NULL,
    proposer_id  UUID,
    state        TEXT NOT NULL CHECK (state IN ('proposed', 'applied', 'rejected', 'superseded')),
    decided_by   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    decided_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);

-- `elevate login` without a token (RFC 8628 device authorization): the CLI polls with the device
-- code (stored hashed) while a signed-in person approves the user code on /device.
CREATE TABLE device_grants (
    tenant_id        UUID NOT NULL,
    id               UUID NOT NULL,
    device_code_hash BYTEA NOT NULL UNIQUE,
    user_code        TEXT NOT NULL,
    client           TEXT NOT NULL,
    ip               TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'used')),
    user_id          UUID,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    last_polled_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_code)
);

ALTER TABLE approvals ADD COLUMN stepped_up BOOLEAN NOT NULL DEFAULT false;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['passkeys', 'webauthn_ceremonies', 'policy_proposals', 'device_grants'] LOOP
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
