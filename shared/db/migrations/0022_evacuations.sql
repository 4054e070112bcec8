-- Evacuations (nova's os-evacuate; `stratus host evacuate`): a server whose host is gone,
-- rebuilt from its image on another host (conductor/evacuate.py).
--
-- One row per evacuation. The gateway records it (``accepted``, with the server as it is:
-- its spec, as shared.messages.InstanceSpec, so the destination defines the same server,
-- config drive included); the conductor claims the destination and moves the server there
-- (``placed``, dest_host set) or gives up (``error``: no host had room). The row outlives
-- the rebuild: when the dead source host comes back and reports the server's stale domain,
-- the conductor has it destroyed (``source-cleaned``) instead of the host ever running it
-- again (conductor/reconcile.py). requested_host is the request's ``host`` (NULL: the
-- scheduler picks).
CREATE TABLE evacuations (
    id              uuid PRIMARY KEY,
    server_id       uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    action_id       uuid NOT NULL,
    source_host     text NOT NULL,
    requested_host  text,
    dest_host       text,
    instance        jsonb NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('accepted', 'placed', 'error', 'source-cleaned')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status NOT IN ('placed', 'source-cleaned') OR dest_host IS NOT NULL)
);
-- a server is evacuated once at a time
CREATE UNIQUE INDEX evacuations_one_open ON evacuations (server_id) WHERE status = 'accepted';
-- what a returning host must destroy
CREATE INDEX evacuations_stale_on_source ON evacuations (source_host) WHERE status = 'placed';
