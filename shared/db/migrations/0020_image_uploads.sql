-- Images users create and upload through the image service API (Glance v2): the container
-- format and protection they ask for, and what the upload computed of the data: its MD5
-- (Glance's `checksum`) and its SHA-512 (`os_hash_algo`, `os_hash_value`). An upload under
-- way is `saving`, marked alive by its gateway at `upload_seen_at`; one whose gateway died is
-- put back to `queued` once that mark is stale. Images imported or snapshotted are `bare`.
ALTER TABLE images ADD COLUMN container_format text DEFAULT 'bare';
ALTER TABLE images ADD COLUMN protected boolean NOT NULL DEFAULT false;
ALTER TABLE images ADD COLUMN checksum text;
ALTER TABLE images ADD COLUMN os_hash_algo text;
ALTER TABLE images ADD COLUMN os_hash_value text;
ALTER TABLE images ADD COLUMN upload_seen_at timestamptz;
CREATE INDEX images_uploads_saving ON images (upload_seen_at)
    WHERE status = 'saving' AND upload_seen_at IS NOT NULL;
-- the image API creates images whose disk format is not said yet (Glance's null)
ALTER TABLE images ALTER COLUMN disk_format DROP NOT NULL;
