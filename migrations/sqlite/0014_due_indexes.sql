-- The reaper finds what is due (and when it next is) through these, not by reading every request
-- of the tenant: pending requests by their lapse, scheduled ones by their start, and grants that
-- have not ended by their end (a grant's `ended_at` is set exactly when its request reaches a
-- final state, so every active grant is in `grants_open`).
CREATE INDEX requests_due_pending ON requests (tenant_id, pending_until) WHERE state = 'pending';
CREATE INDEX requests_due_scheduled ON requests (tenant_id, starts_at) WHERE state = 'scheduled';
CREATE INDEX grants_open ON grants (tenant_id, not_after) WHERE ended_at IS NULL;
