-- The admin actions of chapter 3 (guide 3.1).

-- createBackup: how many backups of its type (images.backup_type) the server keeps. Recorded
-- with the backup when it is asked for, so the conductor rotates by what the user asked, not
-- by anything a host reports. NULL for every image that is not a backup.
ALTER TABLE images
    ADD COLUMN backup_rotation integer CHECK (backup_rotation IS NULL OR backup_rotation >= 0);

-- Rotation picks a server's backups of one type, newest first.
CREATE INDEX images_backups ON images (server_id, backup_type, created_at DESC)
    WHERE image_type = 'backup' AND deleted_at IS NULL;

-- os-instance-actions shows an action by the request that started it.
CREATE INDEX actions_server_request ON actions (server_id, request_id);
