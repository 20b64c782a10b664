import type { Database } from "bun:sqlite";
import { MIGRATIONS, type Migration } from "./migrations/index.ts";

/**
 * Applies the migrations not yet recorded in `_migrations`, each in its own
 * transaction, oldest first. Returns the ids applied now.
 */
export function migrate(db: Database, migrations: Migration[] = MIGRATIONS): string[] {
  db.run(`CREATE TABLE IF NOT EXISTS _migrations (
    id TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  )`);
  const done = new Set(db.query<{ id: string }, []>("SELECT id FROM _migrations").all().map((r) => r.id));
  const applied: string[] = [];
  for (const m of [...migrations].sort((a, b) => a.id.localeCompare(b.id))) {
    if (done.has(m.id)) continue;
    db.transaction(() => {
      m.up(db);
      db.run("INSERT INTO _migrations (id) VALUES (?)", [m.id]);
    })();
    applied.push(m.id);
  }
  return applied;
}
