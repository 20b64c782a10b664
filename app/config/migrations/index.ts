import type { Database } from "bun:sqlite";
import * as m20261123_120000 from "./20261123_120000_settings.ts";
import * as m20261123_130000 from "./20261123_130000_destinations.ts";
import * as m20261201_120000 from "./20261201_120000_practable_loopback.ts";
import * as m20261202_000000 from "./20261202_000000_destination_cursors.ts";

/** One schema change, named by the timestamp it was written at. */
export interface Migration {
  id: string;
  up(db: Database): void;
}

/**
 * Every migration, oldest first. Listed here (not read from the folder) so the
 * compiled binary carries them. A new migration is a new timestamped file plus a line here.
 */
export const MIGRATIONS: Migration[] = [
  { id: "20261123_120000_settings", up: m20261123_120000.up },
  { id: "20261123_130000_destinations", up: m20261123_130000.up },
  { id: "20261201_120000_practable_loopback", up: m20261201_120000.up },
  { id: "20261202_000000_destination_cursors", up: m20261202_000000.up },
];
