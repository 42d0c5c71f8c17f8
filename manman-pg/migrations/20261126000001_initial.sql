-- ManMan's schema: the catalogue, workers, instances, status history, command records, and the
-- credentials of operators and workers. Everything lives in schema `manman`.

CREATE TABLE manman.game_servers (
    id          bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT game_servers_pkey PRIMARY KEY,
    name        text NOT NULL CONSTRAINT game_servers_name_key UNIQUE,
    server_type text NOT NULL CONSTRAINT game_servers_server_type_check CHECK (server_type IN ('steam', 'local')),
    app_id      bigint CONSTRAINT game_servers_app_id_key UNIQUE,
    path        text,
    created_at  timestamptz NOT NULL,
    CONSTRAINT game_servers_type_fields_check CHECK (
        (server_type = 'steam' AND app_id IS NOT NULL AND path IS NULL)
        OR (server_type = 'local' AND path IS NOT NULL AND app_id IS NULL)
    )
);

CREATE TABLE manman.game_server_configs (
    id             bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT game_server_configs_pkey PRIMARY KEY,
    game_server_id bigint NOT NULL CONSTRAINT game_server_configs_game_server_id_fkey
                       REFERENCES manman.game_servers (id) ON DELETE RESTRICT,
    name           text NOT NULL,
    is_default     boolean NOT NULL,
    is_visible     boolean NOT NULL,
    -- executable, args, env, working_dir, stop, ready_pattern, restart, steam, …: the config as
    -- the API sends it (validated by the host before it is stored).
    spec           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    CONSTRAINT game_server_configs_game_server_id_name_key UNIQUE (game_server_id, name)
);
-- At most one default config per game.
CREATE UNIQUE INDEX game_server_configs_one_default_idx
    ON manman.game_server_configs (game_server_id) WHERE is_default;

CREATE TABLE manman.workers (
    id                bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT workers_pkey PRIMARY KEY,
    name              text NOT NULL CONSTRAINT workers_name_key UNIQUE,
    epoch             bigint NOT NULL,
    status            text NOT NULL CONSTRAINT workers_status_check
                          CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    version           text NOT NULL,
    labels            jsonb NOT NULL,
    capacity          integer NOT NULL CONSTRAINT workers_capacity_check CHECK (capacity > 0),
    started_at        timestamptz NOT NULL,
    last_heartbeat_at timestamptz,
    ended_at          timestamptz
);
-- The lease sweep: live workers by heartbeat.
CREATE INDEX workers_live_heartbeat_idx ON manman.workers (last_heartbeat_at)
    WHERE status IN ('created', 'initializing', 'running');

CREATE TABLE manman.instances (
    id                bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT instances_pkey PRIMARY KEY,
    config_id         bigint NOT NULL CONSTRAINT instances_config_id_fkey
                          REFERENCES manman.game_server_configs (id) ON DELETE RESTRICT,
    worker_id         bigint NOT NULL CONSTRAINT instances_worker_id_fkey
                          REFERENCES manman.workers (id) ON DELETE RESTRICT,
    worker_epoch      bigint NOT NULL,
    status            text NOT NULL CONSTRAINT instances_status_check
                          CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    created_at        timestamptz NOT NULL,
    started_at        timestamptz,
    ready_at          timestamptz,
    ended_at          timestamptz,
    exit_code         integer,
    exit_signal       integer,
    restart_count     integer NOT NULL DEFAULT 0 CONSTRAINT instances_restart_count_check CHECK (restart_count >= 0),
    last_heartbeat_at timestamptz
);
-- Active instances of a worker (placement, lease sweep, reconciliation).
CREATE INDEX instances_active_worker_idx ON manman.instances (worker_id)
    WHERE status IN ('created', 'initializing', 'running', 'lost');
-- Instances of a config (the API's filter; a config with active instances cannot be deleted).
CREATE INDEX instances_config_id_idx ON manman.instances (config_id, id);
CREATE INDEX instances_status_idx ON manman.instances (status, id);

-- The append-only status history; the current status is on the worker or instance row, written
-- in the same transaction as its history row.
CREATE TABLE manman.status_events (
    id          bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT status_events_pkey PRIMARY KEY,
    event_id    uuid NOT NULL CONSTRAINT status_events_event_id_key UNIQUE,
    worker_id   bigint CONSTRAINT status_events_worker_id_fkey
                    REFERENCES manman.workers (id) ON DELETE CASCADE,
    instance_id bigint CONSTRAINT status_events_instance_id_fkey
                    REFERENCES manman.instances (id) ON DELETE CASCADE,
    from_status text CONSTRAINT status_events_from_status_check
                    CHECK (from_status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    status      text NOT NULL CONSTRAINT status_events_status_check
                    CHECK (status IN ('created', 'initializing', 'running', 'complete', 'crashed', 'lost')),
    cause       text NOT NULL CONSTRAINT status_events_cause_check CHECK (cause IN (
                    'user', 'placed', 'registered', 'spawned', 'ready', 'exited', 'crash-policy',
                    'crash-loop', 'install-failed', 'spawn-failed', 'ready-timeout', 'killed',
                    'lease-expired', 'recovered', 'worker-shutdown', 'worker-restart', 'undelivered',
                    'refused')),
    detail      text,
    as_of       timestamptz NOT NULL,
    reported_at timestamptz NOT NULL,
    CONSTRAINT status_events_one_entity_check CHECK ((worker_id IS NULL) <> (instance_id IS NULL))
);
-- History of one entity, in order (and its latest status).
CREATE INDEX status_events_worker_idx ON manman.status_events (worker_id, id) WHERE worker_id IS NOT NULL;
CREATE INDEX status_events_instance_idx ON manman.status_events (instance_id, id) WHERE instance_id IS NOT NULL;
-- Retention prunes by age.
CREATE INDEX status_events_as_of_idx ON manman.status_events (as_of);

-- Commands: the host's outbox and audit trail.
CREATE TABLE manman.command_records (
    id          uuid CONSTRAINT command_records_pkey PRIMARY KEY,
    worker_id   bigint NOT NULL CONSTRAINT command_records_worker_id_fkey
                    REFERENCES manman.workers (id) ON DELETE CASCADE,
    instance_id bigint CONSTRAINT command_records_instance_id_fkey
                    REFERENCES manman.instances (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    envelope    jsonb NOT NULL,
    state       text NOT NULL CONSTRAINT command_records_state_check
                    CHECK (state IN ('pending', 'delivered', 'succeeded', 'failed', 'expired')),
    detail      text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Commands still on their way (the outbox; expiry).
CREATE INDEX command_records_pending_idx ON manman.command_records (expires_at)
    WHERE state IN ('pending', 'delivered');
-- Retention prunes finished records by age.
CREATE INDEX command_records_finished_idx ON manman.command_records (updated_at)
    WHERE state IN ('succeeded', 'failed', 'expired');

-- Operator API tokens, stored as hashes.
CREATE TABLE manman.api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT api_tokens_pkey PRIMARY KEY,
    name         text NOT NULL CONSTRAINT api_tokens_name_key UNIQUE,
    token_hash   bytea NOT NULL CONSTRAINT api_tokens_token_hash_key UNIQUE,
    scope        text NOT NULL CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'operate', 'admin')),
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Worker credentials (client id + secret hash), exchanged for short-lived worker tokens.
CREATE TABLE manman.worker_credentials (
    client_id   text CONSTRAINT worker_credentials_pkey PRIMARY KEY,
    secret_hash bytea NOT NULL,
    worker_name text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
