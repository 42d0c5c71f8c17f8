-- A new cause: the shim that held a game server died, so its exit is unknown (issue 24).
-- SQLite cannot change a CHECK constraint: the history table is built again with it.
CREATE TABLE status_events_new (
    id          INTEGER CONSTRAINT status_events_pkey PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL CONSTRAINT status_events_event_id_key UNIQUE,
    worker_id   INTEGER CONSTRAINT status_events_worker_id_fkey
                    REFERENCES workers (id) ON DELETE CASCADE,
    instance_id INTEGER CONSTRAINT status_events_instance_id_fkey
                    REFERENCES instances (id) ON DELETE CASCADE,
    from_status TEXT CONSTRAINT status_events_from_status_check
                    CHECK (from_status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    status      TEXT NOT NULL CONSTRAINT status_events_status_check
                    CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    cause       TEXT NOT NULL CONSTRAINT status_events_cause_check CHECK (cause IN (
                    'user', 'placed', 'registered', 'spawned', 'ready', 'exited', 'crash-policy',
                    'crash-loop', 'install-failed', 'spawn-failed', 'ready-timeout', 'killed',
                    'lease-expired', 'recovered', 'worker-shutdown', 'worker-restart', 'undelivered',
                    'refused', 'shim-lost')),
    detail      TEXT,
    as_of       TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    CONSTRAINT status_events_one_entity_check CHECK ((worker_id IS NULL) <> (instance_id IS NULL))
) STRICT;
INSERT INTO status_events_new (id, event_id, worker_id, instance_id, from_status, status, cause,
                               detail, as_of, reported_at)
    SELECT id, event_id, worker_id, instance_id, from_status, status, cause, detail, as_of,
           reported_at
      FROM status_events;
-- The ids go on where they were (not after the highest left, which retention may have pruned).
UPDATE sqlite_sequence
   SET seq = (SELECT MAX(seq) FROM sqlite_sequence
               WHERE name IN ('status_events', 'status_events_new'))
 WHERE name = 'status_events_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'status_events_new', seq FROM sqlite_sequence
     WHERE name = 'status_events'
       AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'status_events_new');
DROP TABLE status_events;
ALTER TABLE status_events_new RENAME TO status_events;
-- History of one entity, in order (and its latest status).
CREATE INDEX status_events_worker_idx ON status_events (worker_id, id) WHERE worker_id IS NOT NULL;
CREATE INDEX status_events_instance_idx ON status_events (instance_id, id) WHERE instance_id IS NOT NULL;
-- Retention prunes by age.
CREATE INDEX status_events_as_of_idx ON status_events (as_of);
