-- The reservation a server was created in (nova's reservation_id, "r-" and 8 characters):
-- every server of one multiple-create request shares it, and lists can be filtered on it.
-- Servers created before this column have none.
ALTER TABLE servers ADD COLUMN reservation_id text;
CREATE INDEX servers_reservation_id ON servers (tenant_id, reservation_id)
    WHERE reservation_id IS NOT NULL;
