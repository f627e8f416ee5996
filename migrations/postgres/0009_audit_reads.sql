-- Reading the audit log is recorded once per reader and hour, not per page (issue 13, item 6): the
-- API looks up the reader's last `audit.read` event by action and time.
CREATE INDEX audit_events_action_at ON audit_events (tenant_id, action, at);
