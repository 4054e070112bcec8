-- Resizes between flavors and hosts (the ``migrations`` table), and what a deleted server
-- leaves behind: the claims of a resize it was in the middle of, and its unfinished snapshots.

-- One row per resize (and, later, per cold migration: the same with new_flavor = old). While a
-- resize runs, the server holds resources on two hosts: the servers row accounts for one
-- claim (its host and its vcpus/ram_mb/disk_gb columns), the migration for the other, named by
-- ``held``:
--   held = 'dest'    the server is still accounted on the source with the old flavor; the
--                    migration holds the new flavor's claim on dest_host;
--   held = 'source'  the server is accounted on the destination with the new flavor; the
--                    migration holds the old flavor's claim on source_host (until confirm);
--   held IS NULL     the migration holds nothing.
-- So "what the hosts hold" is always the servers rows plus the migrations' held claims.
CREATE TABLE migrations (
    id             uuid PRIMARY KEY,
    server_id      uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    action_id      uuid NOT NULL,                           -- the resize it serves
    source_host    text NOT NULL REFERENCES compute_hosts (name),
    dest_host      text REFERENCES compute_hosts (name),    -- NULL until the conductor places it
    old_flavor_id  text NOT NULL,
    new_flavor_id  text NOT NULL,
    -- the server as it was (shared.messages.InstanceSpec, old flavor) and the flavor it goes
    -- to (FlavorSpec): copies, so a flavor changed or deleted meanwhile changes nothing here
    instance       jsonb NOT NULL,
    new_flavor     jsonb NOT NULL,
    -- pre-migrating (accepted) | migrating (placed, source at work) | post-migrating (dest at
    -- work) | finished (VERIFY_RESIZE) | reverting | confirmed | reverted | error
    status         text NOT NULL,
    held           text CHECK (held IN ('source', 'dest')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (held IS NULL OR dest_host IS NOT NULL)
);
-- a server is in one resize at a time
CREATE UNIQUE INDEX migrations_one_open ON migrations (server_id)
    WHERE status IN ('pre-migrating', 'migrating', 'post-migrating', 'finished', 'reverting');
CREATE INDEX migrations_server ON migrations (server_id, created_at DESC);

CREATE FUNCTION stratus_migration_updated() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER migrations_updated_at BEFORE UPDATE ON migrations
    FOR EACH ROW EXECUTE FUNCTION stratus_migration_updated();

-- When a server is deleted (whoever deletes it: the conductor after its host destroyed it, or
-- the gateway for a server whose host is down), whoever gives its own claim back cannot know
-- of the second claim a resize holds: give that one back here, in the same transaction, so
-- host usage stays exact on every path. A snapshot still being written will never be
-- finished for a server that is gone (its report is refused): the image is killed (ERROR).
CREATE FUNCTION stratus_server_deleted() RETURNS trigger AS $$
DECLARE
    m record;
    claim jsonb;
BEGIN
    FOR m IN SELECT id, held, source_host, dest_host, instance, new_flavor
               FROM migrations
              WHERE server_id = NEW.id AND held IS NOT NULL
                FOR UPDATE
    LOOP
        claim := CASE m.held WHEN 'source' THEN m.instance -> 'flavor' ELSE m.new_flavor END;
        UPDATE compute_hosts
           SET vcpus_used = GREATEST(vcpus_used - (claim ->> 'vcpus')::integer, 0),
               ram_mb_used = GREATEST(ram_mb_used - (claim ->> 'ram_mb')::integer, 0),
               disk_gb_used = GREATEST(disk_gb_used - (claim ->> 'disk_gb')::integer, 0)
         WHERE name = CASE m.held WHEN 'source' THEN m.source_host ELSE m.dest_host END;
    END LOOP;
    UPDATE migrations
       SET held = NULL,
           status = CASE WHEN status IN ('confirmed', 'reverted') THEN status ELSE 'error' END
     WHERE server_id = NEW.id
       AND (held IS NOT NULL OR status NOT IN ('confirmed', 'reverted', 'error'));
    UPDATE images SET status = 'killed'
     WHERE server_id = NEW.id AND status IN ('queued', 'saving') AND deleted_at IS NULL;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER servers_deleted_cleanup AFTER UPDATE OF deleted_at ON servers
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION stratus_server_deleted();
