-- A server's key pair (nova's key_name, key_data): the name the create request gave, and the
-- key's public key and fingerprint as they were then, so that a later delivery into the
-- guest does not depend on the key pair still existing (nova kept key_data the same way).
ALTER TABLE servers ADD COLUMN key_name text;
ALTER TABLE servers ADD COLUMN key_data text;
ALTER TABLE servers ADD COLUMN key_fingerprint text;
