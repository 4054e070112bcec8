-- Live migrations (os-migrateLive, guide 3.1 `os-migrateLive`) are rows of ``migrations`` too.
--
-- ``kind`` tells them from resizes (a cold migration is a resize to the same flavor), and
-- the request's two options are kept for the steps that follow it: whether the local disks
-- go along (``block_migration``; false means the disks are on storage both hosts share, and
-- no host may remove them) and whether the destination's free disk was checked at all.
--
-- A live migration never changes the flavor, and its own statuses are not the resizes'
-- (conductor/live_migration.py): accepted -> preparing -> running -> arriving -> cleaning ->
-- confirmed, or, on a failure, -> recovering -> rolling-back -> error. It holds one claim
-- beside the server row's, as a resize does: the destination's (held = 'dest') until the
-- server is accounted there, then the source's (held = 'source') until the source has
-- cleaned up; so the cleanup on deletion (stratus_server_deleted) applies to it unchanged.
ALTER TABLE migrations
    ADD COLUMN kind text NOT NULL DEFAULT 'resize' CHECK (kind IN ('resize', 'live-migration')),
    ADD COLUMN block_migration boolean NOT NULL DEFAULT false,
    ADD COLUMN disk_over_commit boolean NOT NULL DEFAULT false;

-- a server is in one live migration at a time (the gateway closes one an os-resetState left
-- behind before it records the next)
CREATE UNIQUE INDEX migrations_one_live ON migrations (server_id)
    WHERE kind = 'live-migration'
      AND status IN ('accepted', 'preparing', 'running', 'arriving', 'cleaning', 'recovering',
                     'rolling-back');
