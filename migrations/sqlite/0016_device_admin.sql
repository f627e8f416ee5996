-- A device login (elevate login --admin) that asks for the admin scope: approved only by an
-- admin whose session confirmed with a passkey, and answered with a short-lived token.
ALTER TABLE device_grants ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
