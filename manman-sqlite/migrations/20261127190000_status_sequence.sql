-- The last numbered status report applied to each worker and instance: its sender's epoch and
-- its counter in that epoch, written with the status in the same statement. The status processor
-- applies an entity's reports in this order; a change is applied only when its sequence is above
-- this one (a compare-and-set beside the status's). NULL until the first numbered report
-- (changes the host makes itself carry none).
ALTER TABLE workers ADD COLUMN seq_epoch INTEGER;
ALTER TABLE workers ADD COLUMN seq_counter INTEGER
    CONSTRAINT workers_seq_check CHECK ((seq_epoch IS NULL) = (seq_counter IS NULL));

ALTER TABLE instances ADD COLUMN seq_epoch INTEGER;
ALTER TABLE instances ADD COLUMN seq_counter INTEGER
    CONSTRAINT instances_seq_check CHECK ((seq_epoch IS NULL) = (seq_counter IS NULL));
