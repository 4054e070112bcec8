-- Flavor extra specs (nova's os-flavor-extra-specs): key/value pairs an administrator attaches
-- to a flavor; `GET /flavors/{id}/os-extra_specs` shows them (novaclient's flavor-show reads it).
CREATE TABLE flavor_extra_specs (
    flavor_id  text NOT NULL REFERENCES flavors (id) ON DELETE CASCADE,
    key        text NOT NULL,
    value      text NOT NULL,
    PRIMARY KEY (flavor_id, key)
);

-- os-migrations shows each migration with an integer id, as nova's (and the clients' schemas)
-- have it; the uuid stays the key every other table uses.
ALTER TABLE migrations ADD COLUMN number bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX migrations_number ON migrations (number);
CREATE INDEX migrations_created ON migrations (created_at DESC, number DESC);
