-- ManMan's schema on SQLite: the catalogue, workers, instances, status history, command records,
-- and the credentials of operators and workers. The same tables, columns and named constraints
-- as manman-pg's `manman` schema, in SQLite's dialect:
--
-- * STRICT tables, so a column holds the type it declares;
-- * ids are INTEGER PRIMARY KEY AUTOINCREMENT (an id is never given out twice, as identity
--   columns in PostgreSQL);
-- * times are TEXT in one fixed form, `2026-11-26T10:00:00.123456Z` (UTC, microseconds), so
--   they compare and sort as text in time order;
-- * JSON documents are TEXT checked by json_valid; booleans are INTEGER 0 or 1; UUIDs are TEXT
--   in their hyphenated form.

CREATE TABLE game_servers (
    id          INTEGER CONSTRAINT game_servers_pkey PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL CONSTRAINT game_servers_name_key UNIQUE,
    server_type TEXT NOT NULL CONSTRAINT game_servers_server_type_check CHECK (server_type IN ('steam', 'local')),
    app_id      INTEGER CONSTRAINT game_servers_app_id_key UNIQUE,
    path        TEXT,
    created_at  TEXT NOT NULL,
    CONSTRAINT game_servers_type_fields_check CHECK (
        (server_type = 'steam' AND app_id IS NOT NULL AND path IS NULL)
        OR (server_type = 'local' AND path IS NOT NULL AND app_id IS NULL)
    )
) STRICT;

CREATE TABLE game_server_configs (
    id             INTEGER CONSTRAINT game_server_configs_pkey PRIMARY KEY AUTOINCREMENT,
    game_server_id INTEGER NOT NULL CONSTRAINT game_server_configs_game_server_id_fkey
                       REFERENCES game_servers (id) ON DELETE RESTRICT,
    name           TEXT NOT NULL,
    is_default     INTEGER NOT NULL CONSTRAINT game_server_configs_is_default_check CHECK (is_default IN (0, 1)),
    is_visible     INTEGER NOT NULL CONSTRAINT game_server_configs_is_visible_check CHECK (is_visible IN (0, 1)),
    -- executable, args, env, working_dir, stop, ready_pattern, restart, steam, …: the config as
    -- the API sends it (validated by the host before it is stored).
    spec           TEXT NOT NULL CONSTRAINT game_server_configs_spec_check CHECK (json_valid(spec)),
    created_at     TEXT NOT NULL
) STRICT;
-- At most one default config per game.
CREATE UNIQUE INDEX game_server_configs_one_default_idx
    ON game_server_configs (game_server_id) WHERE is_default;
-- Config names are unique per game. An index created after the one above rather than a table
-- constraint: SQLite checks the newest index first, so a config that breaks both rules is told
-- its name is taken, as PostgreSQL tells it.
CREATE UNIQUE INDEX game_server_configs_game_server_id_name_key
    ON game_server_configs (game_server_id, name);

CREATE TABLE workers (
    id                INTEGER CONSTRAINT workers_pkey PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL CONSTRAINT workers_name_key UNIQUE,
    epoch             INTEGER NOT NULL,
    status            TEXT NOT NULL CONSTRAINT workers_status_check
                          CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    version           TEXT NOT NULL,
    labels            TEXT NOT NULL CONSTRAINT workers_labels_check CHECK (json_valid(labels)),
    capacity          INTEGER NOT NULL CONSTRAINT workers_capacity_check CHECK (capacity > 0),
    started_at        TEXT NOT NULL,
    last_heartbeat_at TEXT,
    ended_at          TEXT
) STRICT;
-- The lease sweep: live workers by heartbeat.
CREATE INDEX workers_live_heartbeat_idx ON workers (last_heartbeat_at)
    WHERE status IN ('created', 'initializing', 'running');

CREATE TABLE instances (
    id                INTEGER CONSTRAINT instances_pkey PRIMARY KEY AUTOINCREMENT,
    config_id         INTEGER NOT NULL CONSTRAINT instances_config_id_fkey
                          REFERENCES game_server_configs (id) ON DELETE RESTRICT,
    worker_id         INTEGER NOT NULL CONSTRAINT instances_worker_id_fkey
                          REFERENCES workers (id) ON DELETE RESTRICT,
    worker_epoch      INTEGER NOT NULL,
    status            TEXT NOT NULL CONSTRAINT instances_status_check
                          CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    ready_at          TEXT,
    ended_at          TEXT,
    exit_code         INTEGER,
    exit_signal       INTEGER,
    restart_count     INTEGER NOT NULL DEFAULT 0 CONSTRAINT instances_restart_count_check CHECK (restart_count >= 0),
    last_heartbeat_at TEXT
) STRICT;
-- Active instances of a worker (placement, lease sweep, reconciliation).
CREATE INDEX instances_active_worker_idx ON instances (worker_id)
    WHERE status IN ('created', 'initializing', 'running', 'lost');
-- Instances of a config (the API's filter; a config with active instances cannot be deleted).
CREATE INDEX instances_config_id_idx ON instances (config_id, id);
CREATE INDEX instances_status_idx ON instances (status, id);

-- The append-only status history; the current status is on the worker or instance row, written
-- in the same transaction as its history row.
CREATE TABLE status_events (
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
                    'refused')),
    detail      TEXT,
    as_of       TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    CONSTRAINT status_events_one_entity_check CHECK ((worker_id IS NULL) <> (instance_id IS NULL))
) STRICT;
-- History of one entity, in order (and its latest status).
CREATE INDEX status_events_worker_idx ON status_events (worker_id, id) WHERE worker_id IS NOT NULL;
CREATE INDEX status_events_instance_idx ON status_events (instance_id, id) WHERE instance_id IS NOT NULL;
-- Retention prunes by age.
CREATE INDEX status_events_as_of_idx ON status_events (as_of);

-- Commands: the host's outbox and audit trail.
CREATE TABLE command_records (
    id          TEXT NOT NULL CONSTRAINT command_records_pkey PRIMARY KEY,
    worker_id   INTEGER NOT NULL CONSTRAINT command_records_worker_id_fkey
                    REFERENCES workers (id) ON DELETE CASCADE,
    instance_id INTEGER CONSTRAINT command_records_instance_id_fkey
                    REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    envelope    TEXT NOT NULL CONSTRAINT command_records_envelope_check CHECK (json_valid(envelope)),
    state       TEXT NOT NULL CONSTRAINT command_records_state_check
                    CHECK (state IN ('pending', 'delivered', 'succeeded', 'failed', 'expired')),
    detail      TEXT,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
-- Commands still on their way (the outbox; expiry).
CREATE INDEX command_records_pending_idx ON command_records (expires_at)
    WHERE state IN ('pending', 'delivered');
-- Retention prunes finished records by age.
CREATE INDEX command_records_finished_idx ON command_records (updated_at)
    WHERE state IN ('succeeded', 'failed', 'expired');

-- Operator API tokens, stored as hashes.
CREATE TABLE api_tokens (
    id           INTEGER CONSTRAINT api_tokens_pkey PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL CONSTRAINT api_tokens_name_key UNIQUE,
    token_hash   BLOB NOT NULL CONSTRAINT api_tokens_token_hash_key UNIQUE,
    scope        TEXT NOT NULL CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'operate', 'admin')),
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
) STRICT;

-- Worker credentials (client id + secret hash), exchanged for short-lived worker tokens.
CREATE TABLE worker_credentials (
    client_id   TEXT NOT NULL CONSTRAINT worker_credentials_pkey PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    worker_name TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
