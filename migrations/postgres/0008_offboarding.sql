-- Offboarding and emergency lockdown (issue 13).
--
-- A tenant in lockdown refuses every new grant and credential until an admin lifts it; the columns
-- say since when, why and who (the actor as the audit log names it). NULL lockdown_at: not locked.
ALTER TABLE tenants ADD COLUMN lockdown_at TIMESTAMPTZ;
ALTER TABLE tenants ADD COLUMN lockdown_reason TEXT;
ALTER TABLE tenants ADD COLUMN lockdown_by TEXT;

-- The token a token was minted with (POST /api/v1/tokens), so revoking a token revokes what it
-- minted. NULL for tokens made by a person (pages, CLI).
ALTER TABLE api_tokens ADD COLUMN parent_id UUID;
CREATE INDEX api_tokens_parent ON api_tokens (tenant_id, parent_id);
