-- A new cause: the shim that held a game server died, so its exit is unknown (issue 24).
ALTER TABLE manman.status_events DROP CONSTRAINT status_events_cause_check;
ALTER TABLE manman.status_events ADD CONSTRAINT status_events_cause_check CHECK (cause IN (
    'user', 'placed', 'registered', 'spawned', 'ready', 'exited', 'crash-policy',
    'crash-loop', 'install-failed', 'spawn-failed', 'ready-timeout', 'killed',
    'lease-expired', 'recovered', 'worker-shutdown', 'worker-restart', 'undelivered',
    'refused', 'shim-lost')) NOT VALID;
-- Every row already passed the narrower check: validating it takes no lock that holds writes.
ALTER TABLE manman.status_events VALIDATE CONSTRAINT status_events_cause_check;
