-- Fixed addresses without a lock per network (issue 18).
--
-- Until now an allocator took its network's advisory lock, then looked for the lowest address
-- fixed_ips did not hold: every conductor's builds took turns on it (82 % of PostgreSQL's
-- samples in a boot storm waited there). Now each network's free addresses are rows of their
-- own: an allocator deletes the lowest one nobody else has locked (FOR UPDATE SKIP LOCKED)
-- in its build's transaction, so allocators never wait for each other, and a build that rolls
-- back gives its address back with everything else. fixed_ips stays what decides who holds
-- an address (its primary key): a free row whose address turns out to be held is dropped and
-- the allocator takes the next (shared/db/ipam.py).

CREATE TABLE free_addresses (
    network  text NOT NULL,
    address  inet NOT NULL,
    PRIMARY KEY (network, address),
    CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END)
);

-- How far each network's free addresses have been written. A network's range is a setting of
-- the conductors, which the database does not know, and an IPv6 /64 cannot be written whole:
-- so the first allocator that finds no free address writes the next chunk of the range, under
-- this row's lock (the only time allocators of one network wait for each other: once per
-- chunk). Every address of [first, filled_to] that fixed_ips does not hold is in
-- free_addresses (or being taken by a transaction in flight). A conductor that finds another
-- range here (the setting changed) drops the free addresses outside its own and starts over
-- from its first address.
CREATE TABLE address_pools (
    network    text PRIMARY KEY,
    first      inet NOT NULL,
    last       inet NOT NULL,
    filled_to  inet NOT NULL
);

-- An address given back is free again in the same transaction, whatever deleted its row:
-- a delete, a failed build, or its server's row going (ON DELETE CASCADE).
CREATE FUNCTION stratus_free_addresses() RETURNS trigger AS $$
BEGIN
    INSERT INTO free_addresses (network, address)
    SELECT network, address FROM freed
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER fixed_ips_freed AFTER DELETE ON fixed_ips
    REFERENCING OLD TABLE AS freed
    FOR EACH STATEMENT EXECUTE FUNCTION stratus_free_addresses();
