-- The host's secret for signing bus messages (manman_core::signing): one row, shared by every
-- host replica, kept across restarts.
CREATE TABLE manman.bus_secret (
    id     smallint PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL CHECK (octet_length(secret) = 32)
);
