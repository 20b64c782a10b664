import type { Database } from "bun:sqlite";

/**
 * The setting api_loopback_admin (loopback clients were admins) became
 * practable_loopback_api (loopback clients get practable's destination and feed
 * rule API only). A box that had turned loopback trust off keeps it off.
 */
export function up(db: Database): void {
  const old = db.query<{ value: string }, []>("SELECT value FROM settings WHERE key = 'api_loopback_admin'").get();
  if (old) db.run("INSERT OR REPLACE INTO settings (key, value) VALUES ('practable_loopback_api', ?)", [old.value]);
  db.run("DELETE FROM settings WHERE key = 'api_loopback_admin'");
}
