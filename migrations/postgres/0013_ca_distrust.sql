-- Backup and restore (issue 20): a restore distrusts every user CA key of the backup at once.
-- A distrusted key is no longer published in `user-ca.pub` (nor its KRL section), even while
-- certificates it signed are still within their validity: certificates issued or revoked after
-- the backup are unknown to the restored store, so none of them may be trusted.
ALTER TABLE ca_keys ADD COLUMN distrusted_at TIMESTAMPTZ;
