-- Offboarding and emergency lockdown (issue 13); see the Postgres migration for the reasoning.
ALTER TABLE tenants ADD COLUMN lockdown_at TEXT;
ALTER TABLE tenants ADD COLUMN lockdown_reason TEXT;
ALTER TABLE tenants ADD COLUMN lockdown_by TEXT;

ALTER TABLE api_tokens ADD COLUMN parent_id BLOB;
CREATE INDEX api_tokens_parent ON api_tokens (tenant_id, parent_id);
