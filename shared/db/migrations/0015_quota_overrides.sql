-- nova's os-quota-sets: a project's quotas set by an administrator, one row per resource
-- (nova's quota key: instances, cores, ram, key_pairs ...); a resource without a row has the
-- default of the settings. -1 is unlimited.
CREATE TABLE quota_overrides (
    project_id text NOT NULL,
    resource text NOT NULL,
    hard_limit integer NOT NULL CHECK (hard_limit >= -1),
    PRIMARY KEY (project_id, resource)
);
