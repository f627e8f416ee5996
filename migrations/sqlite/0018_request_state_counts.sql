-- Requests by state for `/metrics` without counting the requests table on every scrape (issue
-- 16: a scrape must cost the same at 100 and 100,000 requests). Triggers write each change of a
-- request's state as deltas in the same transaction; the reaper folds them into the totals; a
-- scrape adds the totals and the deltas not yet folded.
CREATE TABLE request_state_totals (
    tenant_id BLOB NOT NULL,
    state     TEXT NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state)
);

CREATE TABLE request_state_deltas (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BLOB NOT NULL,
    state     TEXT NOT NULL,
    n         INTEGER NOT NULL
);
CREATE INDEX request_state_deltas_tenant ON request_state_deltas (tenant_id, id);

INSERT INTO request_state_totals (tenant_id, state, n)
    SELECT tenant_id, state, COUNT(*) FROM requests GROUP BY tenant_id, state;

CREATE TRIGGER requests_state_inserted AFTER INSERT ON requests
BEGIN
    INSERT INTO request_state_deltas (tenant_id, state, n) VALUES (NEW.tenant_id, NEW.state, 1);
END;

CREATE TRIGGER requests_state_changed AFTER UPDATE OF state ON requests
WHEN OLD.state <> NEW.state
BEGIN
    INSERT INTO request_state_deltas (tenant_id, state, n)
        VALUES (NEW.tenant_id, NEW.state, 1), (OLD.tenant_id, OLD.state, -1);
END;

CREATE TRIGGER requests_state_deleted AFTER DELETE ON requests
BEGIN
    INSERT INTO request_state_deltas (tenant_id, state, n) VALUES (OLD.tenant_id, OLD.state, -1);
END;
