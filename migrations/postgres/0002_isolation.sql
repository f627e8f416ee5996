-- Tenant isolation by row-level security, and the roles that make it hold.
--
-- elevate_owner    owns nothing at run time: operators run migrations as it (or as a superuser).
-- elevate_app      what the service logs in as (through a LOGIN role that is a member of it):
--                  DML on tenant tables, INSERT/SELECT only on the audit log, no DDL, no BYPASSRLS.
-- elevate_resolver owns the SECURITY DEFINER functions that map a slug or a secret's hash to its
--                  tenant before a tenant is known (sign-in, bearer tokens, public URLs). It may
--                  read only those columns.
-- The roles are cluster-wide; creating them tolerates another database having done it first.
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['elevate_owner', 'elevate_app', 'elevate_resolver'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
    END LOOP;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'users', 'sessions', 'signin_links', 'api_tokens',
        'policy_versions', 'profiles', 'targets', 'requests', 'approvals', 'grants', 'credentials',
        'ca_keys', 'audit_events', 'audit_checkpoints', 'webhooks', 'notification_outbox'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)', t);
        IF t = 'audit_events' THEN
            EXECUTE format('GRANT SELECT, INSERT ON %I TO elevate_app', t);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO elevate_app', t);
        END IF;
    END LOOP;
END $$;

GRANT SELECT ON _sqlx_migrations TO elevate_app;

-- The resolver reads only what maps a public name or a secret's hash to a tenant.
GRANT SELECT (tenant_id, slug, name, created_at) ON tenants TO elevate_resolver;
GRANT SELECT (tenant_id, secret_hash) ON api_tokens TO elevate_resolver;
GRANT SELECT (tenant_id, secret_hash) ON sessions TO elevate_resolver;
GRANT SELECT (tenant_id, secret_hash) ON signin_links TO elevate_resolver;
CREATE POLICY resolver_read ON tenants FOR SELECT TO elevate_resolver USING (true);
CREATE POLICY resolver_read ON api_tokens FOR SELECT TO elevate_resolver USING (true);
CREATE POLICY resolver_read ON sessions FOR SELECT TO elevate_resolver USING (true);
CREATE POLICY resolver_read ON signin_links FOR SELECT TO elevate_resolver USING (true);

CREATE FUNCTION elevate_tenant_by_slug(p_slug text)
RETURNS TABLE (tenant_id uuid, slug text, name text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT t.tenant_id, t.slug, t.name, t.created_at FROM public.tenants t WHERE t.slug = p_slug $$;

CREATE FUNCTION elevate_tenant_list()
RETURNS TABLE (tenant_id uuid, slug text, name text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT t.tenant_id, t.slug, t.name, t.created_at FROM public.tenants t ORDER BY t.slug $$;

CREATE FUNCTION elevate_secret_tenant(p_kind text, p_hash bytea)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tenant_id FROM public.api_tokens WHERE p_kind = 'api' AND secret_hash = p_hash
    UNION ALL
    SELECT tenant_id FROM public.sessions WHERE p_kind = 'session' AND secret_hash = p_hash
    UNION ALL
    SELECT tenant_id FROM public.signin_links WHERE p_kind = 'signin' AND secret_hash = p_hash
    LIMIT 1
$$;

DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['elevate_tenant_by_slug(text)', 'elevate_tenant_list()',
        'elevate_secret_tenant(text, bytea)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO elevate_resolver', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO elevate_app', f);
    END LOOP;
END $$;

-- Tables belong to elevate_owner, never to the role the service logs in as.
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public'
        AND tablename <> '_sqlx_migrations' LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO elevate_owner', t);
    END LOOP;
END $$;
