-- An instance carries the cause and detail of its last status change beside its status, so a
-- list of instances says why each is what it is without reading their histories.
ALTER TABLE instances ADD COLUMN cause TEXT NOT NULL DEFAULT 'placed';
ALTER TABLE instances ADD COLUMN detail TEXT;
UPDATE instances SET
    cause = COALESCE((SELECT e.cause FROM status_events e WHERE e.instance_id = instances.id
                      ORDER BY e.id DESC LIMIT 1), 'placed'),
    detail = (SELECT e.detail FROM status_events e WHERE e.instance_id = instances.id
              ORDER BY e.id DESC LIMIT 1);
