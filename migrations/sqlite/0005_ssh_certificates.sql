-- SSH certificates: which CA key signed each one (the KRL groups serials by CA) and the
-- certificate itself (public data, offered again for download on the request page).
ALTER TABLE credentials ADD COLUMN ca_key_id BLOB;
ALTER TABLE credentials ADD COLUMN certificate TEXT;
CREATE INDEX credentials_request ON credentials (tenant_id, request_id);
