-- The host's secret for signing bus messages (manman_core::signing): one row, kept across
-- restarts.
CREATE TABLE bus_secret (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL CHECK (length(secret) = 32)
);
