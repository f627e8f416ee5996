-- Audit you can prove (issue 7): the log and its checkpoints are append-only even for the owner,
-- and per-tenant sinks stream the log off the box.
--
-- The app role keeps INSERT and SELECT only. 0002 gave it UPDATE/DELETE on audit_checkpoints
-- with the other tables; checkpoints are evidence too, so that is taken back here.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM elevate_app;
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO elevate_app;

-- Refuses UPDATE, DELETE and TRUNCATE from anyone, the owner and superusers included, unless the
-- session has turned maintenance on: `SET elevate.audit_maintenance = 'on'` (documented in
-- SECURITY.md; meant for an operator at psql deleting a whole tenant, never for the service).
CREATE FUNCTION elevate_audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('elevate.audit_maintenance', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused (set elevate.audit_maintenance for maintenance)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE ALL ON FUNCTION elevate_audit_append_only() FROM PUBLIC;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_events', 'audit_checkpoints'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION elevate_audit_append_only()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION elevate_audit_append_only()', t || '_no_truncate', t);
    END LOOP;
END $$;

-- Filtering the auditor's page by request.
CREATE INDEX audit_events_request ON audit_events (tenant_id, request_id);

-- Where a tenant's log is streamed to. Delivery reads the log itself (it is the outbox: every
-- event is already stored in the transaction of its change) from a cursor per sink, so a sink
-- that is down delays nothing but itself.
CREATE TABLE audit_sinks (
    tenant_id                UUID NOT NULL REFERENCES tenants (tenant_id),
    id                       UUID NOT NULL,
    kind                     TEXT NOT NULL CHECK (kind IN ('webhook', 'syslog')),
    target                   TEXT NOT NULL,
    secret_sealed            BYTEA,
    delivered_seq            BIGINT NOT NULL DEFAULT 0,
    delivered_checkpoint_seq BIGINT NOT NULL DEFAULT 0,
    attempts                 BIGINT NOT NULL DEFAULT 0,
    next_attempt_at          TIMESTAMPTZ NOT NULL,
    last_error               TEXT,
    last_delivered_at        TIMESTAMPTZ,
    created_at               TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE audit_sinks ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_sinks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_sinks
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_sinks TO elevate_app;
ALTER TABLE audit_sinks OWNER TO elevate_owner;
