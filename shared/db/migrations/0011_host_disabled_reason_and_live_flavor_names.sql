-- What the operator's tools need (stratus host disable --reason, stratus flavor create/delete):
-- why a host was disabled (cleared when it is enabled again), and a flavor name that is unique
-- among live flavors only. A deleted flavor keeps its row, since servers built from it still
-- name it, and its name can be given to a new flavor.
ALTER TABLE compute_hosts ADD COLUMN disabled_reason text;

ALTER TABLE flavors DROP CONSTRAINT flavors_name_key;
CREATE UNIQUE INDEX flavors_live_name ON flavors (name) WHERE deleted_at IS NULL;
