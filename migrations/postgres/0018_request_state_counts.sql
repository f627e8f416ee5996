-- Requests by state for `/metrics` without counting the requests table on every scrape (issue
-- 16: a scrape must cost the same at 100 and 100,000 requests). A trigger writes each change of
-- a request's state as deltas in the same transaction (insert-only, so concurrent transitions
-- never wait on a shared counter row); the reaper folds them into the totals; a scrape adds the
-- totals and the deltas not yet folded.
CREATE TABLE request_state_totals (
    tenant_id UUID NOT NULL,
    state     TEXT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, state)
);

CREATE TABLE request_state_deltas (
    id        BIGINT GENERATED ALWAYS AS IDENTITY,
    tenant_id UUID NOT NULL,
    state     TEXT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

INSERT INTO request_state_totals (tenant_id, state, n)
    SELECT tenant_id, state, COUNT(*) FROM requests GROUP BY tenant_id, state;

-- Runs as the caller (the service's role, pinned to the request's tenant), so row-level
-- security applies to the deltas it writes.
CREATE FUNCTION elevate_request_state_delta() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO public.request_state_deltas (tenant_id, state, n) VALUES (OLD.tenant_id, OLD.state, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO public.request_state_deltas (tenant_id, state, n) VALUES (NEW.tenant_id, NEW.state, 1);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION elevate_request_state_delta() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION elevate_request_state_delta() TO elevate_app;

CREATE TRIGGER requests_state_inserted AFTER INSERT ON requests
    FOR EACH ROW EXECUTE FUNCTION elevate_request_state_delta();
CREATE TRIGGER requests_state_changed AFTER UPDATE OF state ON requests
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION elevate_request_state_delta();
CREATE TRIGGER requests_state_deleted AFTER DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION elevate_request_state_delta();

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['request_state_totals', 'request_state_deltas'] LOOP
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
