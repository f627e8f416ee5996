-- Request lists (API `GET /requests`, approvals inbox, dashboard) are filtered in SQL and paged
-- newest first by (created_at, id); these indexes serve each filter without scanning the table.
-- Every tenant's requests, newest first (admins, auditors, approvers).
CREATE INDEX requests_newest ON requests (tenant_id, created_at, id);
-- One requester's requests (`mine`, and what a requester sees).
CREATE INDEX requests_requester_newest ON requests (tenant_id, requester_id, created_at, id);
-- Requests in one state.
CREATE INDEX requests_state_newest ON requests (tenant_id, state, created_at, id);
-- What waits for an approver: pending requests, pending extensions and break-glass activations
-- not yet reviewed. The predicate is repeated word for word by the inbox query
-- (`store::requests::WAITING`), so requests filed and cancelled by the thousand never sit in its way.
CREATE INDEX requests_waiting ON requests (tenant_id, created_at, id)
    WHERE state = 'pending' OR extension_round IS NOT NULL OR (break_glass AND reviewed_by IS NULL);
