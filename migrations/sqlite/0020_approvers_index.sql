-- Who is told that a request waits (issue 16): the enabled approvers of a tenant, found through
-- this index instead of reading every user into the filing's write transaction. `roles` is the
-- JSON array the service writes (`["approver", ...]`); the query also checks it exactly.
CREATE INDEX users_approvers ON users (tenant_id, email)
    WHERE NOT disabled AND roles LIKE '%"approver"%';
