-- When the server's current task began: the conductor's reaper ends a task that has run past
-- its deadline. Kept by a trigger, so that no writer of task_state (gateway, conductor, an
-- operator's SQL) can forget it.
ALTER TABLE servers ADD COLUMN task_started_at timestamptz;
UPDATE servers SET task_started_at = updated_at WHERE task_state IS NOT NULL;

CREATE FUNCTION stratus_stamp_task_start() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.task_state IS DISTINCT FROM OLD.task_state THEN
        NEW.task_started_at := CASE WHEN NEW.task_state IS NULL THEN NULL ELSE now() END;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER servers_stamp_task_start BEFORE INSERT OR UPDATE OF task_state ON servers
    FOR EACH ROW EXECUTE FUNCTION stratus_stamp_task_start();

-- the reaper's scan: only servers running a task, oldest first
CREATE INDEX servers_task_started ON servers (task_started_at)
    WHERE task_state IS NOT NULL AND deleted_at IS NULL;
