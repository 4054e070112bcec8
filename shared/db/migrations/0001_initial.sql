-- The first schema: flavors, images, compute hosts, servers and their children, actions.

CREATE TABLE flavors (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    ram_mb      integer NOT NULL CHECK (ram_mb > 0),
    disk_gb     integer NOT NULL CHECK (disk_gb >= 0),
    vcpus       integer NOT NULL CHECK (vcpus > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE images (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    status        text NOT NULL,            -- queued | saving | active | killed | deleted
    progress      integer NOT NULL DEFAULT 0,
    owner         text,                      -- project id; NULL = provider image
    user_id       text,
    is_public     boolean NOT NULL DEFAULT false,
    min_disk_gb   integer NOT NULL DEFAULT 0,
    min_ram_mb    integer NOT NULL DEFAULT 0,
    disk_format   text NOT NULL DEFAULT 'qcow2',
    location      text,                      -- path of the image file in the image store
    size_bytes    bigint,
    server_id     uuid,                      -- the server a snapshot or backup was made from
    image_type    text NOT NULL DEFAULT 'base', -- base | snapshot | backup
    backup_type   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX images_owner_created ON images (owner, created_at DESC, id DESC);

CREATE TABLE image_metadata (
    image_id  uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    key       text NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (image_id, key)
);

CREATE TABLE compute_hosts (
    name            text PRIMARY KEY,
    hypervisor_type text NOT NULL,
    hypervisor_uri  text NOT NULL,
    vcpus           integer NOT NULL,
    ram_mb          integer NOT NULL,
    disk_gb         integer NOT NULL,
    vcpus_used      integer NOT NULL DEFAULT 0,
    ram_mb_used     integer NOT NULL DEFAULT 0,
    disk_gb_used    integer NOT NULL DEFAULT 0,
    enabled         boolean NOT NULL DEFAULT true,
    up              boolean NOT NULL DEFAULT true,
    last_heartbeat  timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (vcpus_used >= 0 AND ram_mb_used >= 0 AND disk_gb_used >= 0)
);

CREATE TABLE servers (
    id            uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    user_id       text NOT NULL,
    name          text NOT NULL,
    image_id      uuid NOT NULL,
    flavor_id     text NOT NULL,
    -- what the server holds on its host; copied from the flavor so a flavor change cannot
    -- make the host's usage drift
    vcpus         integer NOT NULL,
    ram_mb        integer NOT NULL,
    disk_gb       integer NOT NULL,
    vm_state      text NOT NULL,
    task_state    text,
    power_state   integer NOT NULL DEFAULT 0,
    host          text REFERENCES compute_hosts (name),
    progress      integer NOT NULL DEFAULT 0,
    access_ipv4   text NOT NULL DEFAULT '',
    access_ipv6   text NOT NULL DEFAULT '',
    locked        boolean NOT NULL DEFAULT false,
    locked_by     text,
    -- bumped by a trigger on every change of the row or its children, so caches and
    -- changes-since can trust it
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    launched_at   timestamptz,
    deleted_at    timestamptz
);
CREATE INDEX servers_tenant_created ON servers (tenant_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX servers_tenant_updated ON servers (tenant_id, updated_at);
CREATE INDEX servers_host ON servers (host) WHERE deleted_at IS NULL;

CREATE TABLE server_metadata (
    server_id  uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    key        text NOT NULL,
    value      text NOT NULL,
    PRIMARY KEY (server_id, key)
);

CREATE TABLE server_addresses (
    server_id  uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    network    text NOT NULL,
    version    smallint NOT NULL CHECK (version IN (4, 6)),
    address    inet NOT NULL,
    PRIMARY KEY (server_id, network, address)
);

CREATE TABLE server_faults (
    id          bigserial PRIMARY KEY,
    server_id   uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    code        integer NOT NULL,
    message     text NOT NULL,
    details     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX server_faults_server ON server_faults (server_id, id DESC);

-- The audit trail: every accepted action is a row before it is a message.
CREATE TABLE actions (
    id           uuid PRIMARY KEY,
    request_id   text NOT NULL,
    server_id    uuid NOT NULL,
    action       text NOT NULL,
    tenant_id    text NOT NULL,
    user_id      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    result       text NOT NULL DEFAULT 'pending',   -- pending | success | error
    message      text
);
CREATE INDEX actions_server ON actions (server_id, started_at DESC);

CREATE FUNCTION stratus_bump_server_version() RETURNS trigger AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER servers_bump_version BEFORE UPDATE ON servers
    FOR EACH ROW EXECUTE FUNCTION stratus_bump_server_version();

CREATE FUNCTION stratus_touch_server() RETURNS trigger AS $$
BEGIN
    UPDATE servers SET version = version
     WHERE id = COALESCE(NEW.server_id, OLD.server_id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER server_metadata_touch AFTER INSERT OR UPDATE OR DELETE ON server_metadata
    FOR EACH ROW EXECUTE FUNCTION stratus_touch_server();
CREATE TRIGGER server_addresses_touch AFTER INSERT OR UPDATE OR DELETE ON server_addresses
    FOR EACH ROW EXECUTE FUNCTION stratus_touch_server();
CREATE TRIGGER server_faults_touch AFTER INSERT ON server_faults
    FOR EACH ROW EXECUTE FUNCTION stratus_touch_server();
