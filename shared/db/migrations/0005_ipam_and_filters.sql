-- Fixed IP addresses (IPAM), image faults, and the indexes behind the list filters.

-- One row per address given out. The primary key is the address alone, so no address is ever
-- given out twice, whichever network label or conductor asks: a second INSERT of it conflicts.
-- (server_id, network) is unique too, so a redelivered build cannot take a second address on
-- a network. Rows go away when the server is deleted, and the address is free again.
CREATE TABLE fixed_ips (
    address       inet PRIMARY KEY,
    network       text NOT NULL,
    server_id     uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    allocated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server_id, network),
    -- host addresses only: inet equality includes the prefix length
    CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END)
);

-- An image whose creation failed (status killed = ERROR) shows its fault (Ex 1.50/1.51).
ALTER TABLE images
    ADD COLUMN fault_code        integer,
    ADD COLUMN fault_message     text,
    ADD COLUMN fault_details     text NOT NULL DEFAULT '',
    ADD COLUMN fault_created_at  timestamptz;

-- changes-since on images trusts updated_at: every change of an image row or of its metadata
-- moves it, whoever writes.
CREATE FUNCTION stratus_image_updated() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER images_updated_at BEFORE UPDATE ON images
    FOR EACH ROW EXECUTE FUNCTION stratus_image_updated();

CREATE FUNCTION stratus_touch_image() RETURNS trigger AS $$
BEGIN
    UPDATE images SET updated_at = now() WHERE id = COALESCE(NEW.image_id, OLD.image_id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER image_metadata_touch AFTER INSERT OR UPDATE OR DELETE ON image_metadata
    FOR EACH ROW EXECUTE FUNCTION stratus_touch_image();

-- Server list filters: every filter but the name regex narrows one project's servers by an
-- indexed column (changes-since uses servers_tenant_updated from the first migration).
CREATE INDEX servers_tenant_image ON servers (tenant_id, image_id);
CREATE INDEX servers_tenant_flavor ON servers (tenant_id, flavor_id);
CREATE INDEX servers_tenant_vm_state ON servers (tenant_id, vm_state);

-- Image list filters: images made from a server, and changes-since.
CREATE INDEX images_server ON images (server_id) WHERE server_id IS NOT NULL;
CREATE INDEX images_updated ON images (updated_at);
