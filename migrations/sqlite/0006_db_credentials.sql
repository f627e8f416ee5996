-- Database logins as credentials: the role the grant's login inherits objects to at cleanup, and
-- lookups for the reaper (due cleanups) and the start-up sweep (live role names per target).
ALTER TABLE credentials ADD COLUMN owner_role TEXT;
CREATE UNIQUE INDEX credentials_db_role ON credentials (tenant_id, target_name, role_name)
    WHERE kind = 'db_role';
CREATE INDEX credentials_cleanup ON credentials (tenant_id, next_attempt_at)
    WHERE kind = 'db_role' AND cleaned_up_at IS NULL;
