-- Which request a notification is about (shown on the request page).
ALTER TABLE notification_outbox ADD COLUMN request_id UUID;
