-- Whether an action's command is known to have reached the broker.
--
-- A gateway records an action, commits, then publishes its command; killed between the two,
-- it leaves a task no command will ever finish. The gateway records its actions unsent and
-- marks them sent once the broker confirmed the command (before it answers the client), so
-- the reaper can tell such a task from one a host was given and never finished: the first
-- is taken back as the gateway itself would have done had the broker refused the command
-- (the client never got an answer), the second goes to ERROR (conductor/reaper.py).
-- Every action recorded elsewhere (the reaper's, the conductor's) is sent by definition.
ALTER TABLE actions ADD COLUMN sent boolean NOT NULL DEFAULT true;
