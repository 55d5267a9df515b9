-- drivesight 0005: what the cars' models said about each trip, and which model versions each car runs.
ALTER TABLE trips
    ADD COLUMN driving_style                text,
    ADD COLUMN driving_style_probabilities  jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN model_versions               jsonb NOT NULL DEFAULT '{}';

ALTER TABLE vehicles
    ADD COLUMN models        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN model_update  text;
