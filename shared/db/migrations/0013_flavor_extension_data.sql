-- What nova 2013.1's flavor extensions show of a flavor (os-flavor-swap, os-flavor-rxtx,
-- OS-FLV-EXT-DATA, os-flavor-access, OS-FLV-DISABLED). The defaults are nova's values for its
-- default flavors, so the seeded m1.* flavors, every existing flavor and `stratus flavor create`
-- get them without naming them.
ALTER TABLE flavors
    ADD COLUMN swap_mb integer NOT NULL DEFAULT 0 CHECK (swap_mb >= 0),
    ADD COLUMN ephemeral_gb integer NOT NULL DEFAULT 0 CHECK (ephemeral_gb >= 0),
    ADD COLUMN rxtx_factor double precision NOT NULL DEFAULT 1.0 CHECK (rxtx_factor > 0),
    ADD COLUMN is_public boolean NOT NULL DEFAULT true,
    ADD COLUMN disabled boolean NOT NULL DEFAULT false;
