-- drivesight 0004: the boot session a vehicle's status came from, so that a last will ends only its own session.
ALTER TABLE vehicles ADD COLUMN boot_id text;
