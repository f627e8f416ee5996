-- An extension waiting for approval: its approval round and the seconds it adds.
ALTER TABLE requests ADD COLUMN extension_round BIGINT;
ALTER TABLE requests ADD COLUMN extension_secs BIGINT;
