import { Database } from "bun:sqlite";
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { migrate } from "./migrate.ts";
import { DEFAULT_SETTINGS, SETTING_FIELDS, validateSettings, type Settings } from "./settings.ts";

/** Name of the settings database file inside the data dir. */
export const SETTINGS_FILE = "switchyard.db";

type Listener = (next: Settings, previous: Settings) => void;

/**
 * The settings store: runtime settings and secrets in bun:sqlite under the data
 * dir. Holds the current settings in memory; `update` validates, saves and
 * notifies listeners, so changes apply live.
 */
export class SettingsStore {
  private current: Settings;
  private listeners: Listener[] = [];

  private constructor(readonly db: Database, readonly appliedMigrations: string[]) {
    this.current = this.load();
  }

  /**
   * Opens (creating if needed) the store in `dataDir` and applies pending
   * migrations. On a full disk, where SQLite cannot size its shared-memory file
   * (SQLITE_IOERR_SHMSIZE), it opens with an exclusive lock instead (no
   * shared-memory file: other processes wait until this one ends) and says so
   * through `onDegraded`; reads work, writes fail with a clear error until there is room.
   */
  static open(dataDir: string, onDegraded?: (why: string) => void): SettingsStore {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = join(dataDir, SETTINGS_FILE);
    let db = new Database(file, { create: true, strict: true });
    chmodSync(file, 0o600);
    try {
      db.run("PRAGMA journal_mode = WAL");
    } catch (err) {
      if ((err as { code?: string }).code !== "SQLITE_IOERR_SHMSIZE") throw err;
      db.close();
      db = new Database(file, { create: true, strict: true });
      db.run("PRAGMA locking_mode = EXCLUSIVE");
      db.run("PRAGMA journal_mode = WAL");
      onDegraded?.("the settings store could not create its shared-memory file (disk full?): it is open with an exclusive lock, so CLI commands that use it wait until the server stops");
    }
    db.run("PRAGMA busy_timeout = 5000");
    const applied = migrate(db);
    return new SettingsStore(db, applied);
  }

  /** The settings in force now. */
  get settings(): Settings {
    return this.current;
  }

  /** Validates and saves a partial change; listeners see it at once. Throws InvalidInput on bad input. */
  update(patch: Record<string, unknown>): Settings {
    const next = validateSettings(this.current, patch);
    const write = this.db.prepare("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')");
    this.db.transaction(() => {
      for (const key of Object.keys(patch)) write.run(key, JSON.stringify(next[key as keyof Settings]));
    })();
    const previous = this.current;
    this.current = next;
    for (const l of this.listeners) l(next, previous);
    return next;
  }

  /** Calls `listener` after every change. */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  /**
   * Returns the named secret, creating it with `create()` the first time. Secrets
   * live in their own table, readable only by the file's owner (mode 0600).
   */
  secret(name: string, create: () => string): string {
    const row = this.db.query<{ value: string }, [string]>("SELECT value FROM secrets WHERE name = ?").get(name);
    if (row) return row.value;
    const value = create();
    this.db.run("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", [name, value]);
    return this.db.query<{ value: string }, [string]>("SELECT value FROM secrets WHERE name = ?").get(name)!.value;
  }

  /** The named secret, or null. */
  getSecret(name: string): string | null {
    return this.db.query<{ value: string }, [string]>("SELECT value FROM secrets WHERE name = ?").get(name)?.value ?? null;
  }

  /** Sets (or with null, removes) the named secret. */
  setSecret(name: string, value: string | null): void {
    if (value === null) this.db.run("DELETE FROM secrets WHERE name = ?", [name]);
    else this.db.run("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, value]);
  }

  close(): void {
    this.db.close();
  }

  private load(): Settings {
    const rows = this.db.query<{ key: string; value: string }, []>("SELECT key, value FROM settings").all();
    const stored: Record<string, unknown> = {};
    for (const r of rows) {
      // A key from a newer or older version that this one does not know is kept in the table but not applied.
      if (r.key in SETTING_FIELDS) stored[r.key] = JSON.parse(r.value);
    }
    return validateSettings(DEFAULT_SETTINGS, stored);
  }
}
