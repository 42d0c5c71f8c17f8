-- The console tails of ended instances (manman_core::console::ConsoleTail): their last lines,
-- sent by the worker when an instance ends, so that its console can be read after any restart.
-- A tail goes with its instance; retention deletes it with the instance's history.
CREATE TABLE manman.console_tails (
    instance_id bigint PRIMARY KEY
                REFERENCES manman.instances (id) ON DELETE CASCADE,
    lines       jsonb NOT NULL
);
