-- An instance carries the cause and detail of its last status change beside its status, so a
-- list of instances says why each is what it is without reading their histories.
ALTER TABLE manman.instances ADD COLUMN cause text NOT NULL DEFAULT 'placed',
                             ADD COLUMN detail text;
UPDATE manman.instances i SET cause = e.cause, detail = e.detail
  FROM (SELECT DISTINCT ON (instance_id) instance_id, cause, detail
          FROM manman.status_events WHERE instance_id IS NOT NULL
         ORDER BY instance_id, id DESC) e
 WHERE e.instance_id = i.id;
ALTER TABLE manman.instances ALTER COLUMN cause DROP DEFAULT;
