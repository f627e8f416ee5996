-- Audit you can prove (issue 7): checkpoints are append-only like the events, and per-tenant
-- sinks stream the log off the box (see the Postgres migration for the reasoning).
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE INDEX audit_events_request ON audit_events (tenant_id, request_id);

CREATE TABLE audit_sinks (
    tenant_id                BLOB NOT NULL REFERENCES tenants (tenant_id),
    id                       BLOB NOT NULL,
    kind                     TEXT NOT NULL CHECK (kind IN ('webhook', 'syslog')),
    target                   TEXT NOT NULL,
    secret_sealed            BLOB,
    delivered_seq            INTEGER NOT NULL DEFAULT 0,
    delivered_checkpoint_seq INTEGER NOT NULL DEFAULT 0,
    attempts                 INTEGER NOT NULL DEFAULT 0,
    next_attempt_at          TEXT NOT NULL,
    last_error               TEXT,
    last_delivered_at        TEXT,
    created_at               TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
