-- Owners lock their own servers (nova 2013.2): who holds a lock, as nova records it — 'owner'
-- (a member of the server's project) or 'admin' (an administrator); an owner cannot lift an
-- administrator's lock. locked_by keeps the user who locked. Locks taken before this
-- migration were administrators' under the defaults of the time: they stay administrators'.
ALTER TABLE servers ADD COLUMN locked_by_role text
    CHECK (locked_by_role IN ('owner', 'admin'));
UPDATE servers SET locked_by_role = 'admin' WHERE locked;
