-- os-services' `id` (nova 2013.2 and later, required by tempest's v2.1 schema and read by the
-- openstack CLI): a stable integer per compute host's nova-compute service. The existing hosts
-- are numbered in the order they registered.
--
-- Not an identity column: hosts register by the heartbeat's INSERT ... ON CONFLICT DO UPDATE,
-- which computes a proposed row's defaults (a sequence's nextval) on every heartbeat, conflict
-- or not, and would burn a number each time. An AFTER INSERT trigger fires only for a row
-- really inserted, in the inserting statement, so no committed host is ever without its id.
CREATE SEQUENCE compute_host_service_ids AS integer;

ALTER TABLE compute_hosts ADD COLUMN service_id integer UNIQUE;

UPDATE compute_hosts AS h SET service_id = numbered.n
  FROM (SELECT name, nextval('compute_host_service_ids') AS n
          FROM (SELECT name FROM compute_hosts ORDER BY created_at, name) AS ordered) AS numbered
 WHERE h.name = numbered.name;

CREATE FUNCTION compute_host_service_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE compute_hosts SET service_id = nextval('compute_host_service_ids')
     WHERE name = NEW.name AND service_id IS NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER compute_host_service_id AFTER INSERT ON compute_hosts
    FOR EACH ROW WHEN (NEW.service_id IS NULL) EXECUTE FUNCTION compute_host_service_id();
