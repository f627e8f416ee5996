-- Who is told that a request waits (issue 16): the enabled approvers of a tenant, found through
-- this index instead of reading every user into the filing's write transaction.
CREATE INDEX users_approvers ON users (tenant_id, email)
    WHERE NOT disabled AND roles ? 'approver';
