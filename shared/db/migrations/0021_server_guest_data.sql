-- What a server's config drive delivers into its guest (compute_agent/config_drive.py),
-- kept with the server so that every host that defines it again (a rebuild, a migration's
-- destination) builds the same drive: the create request's `config_drive`, its `user_data`
-- (base64, as given), its personality files (a rebuild's replace them: [{"path",
-- "contents"}], contents base64) and the server's index in its multiple create (nova's
-- launch_index). The key pair is key_name/key_data (0016).
ALTER TABLE servers ADD COLUMN config_drive boolean NOT NULL DEFAULT false;
ALTER TABLE servers ADD COLUMN user_data text;
ALTER TABLE servers ADD COLUMN injected_files jsonb NOT NULL DEFAULT '[]';
ALTER TABLE servers ADD COLUMN launch_index integer NOT NULL DEFAULT 0;
