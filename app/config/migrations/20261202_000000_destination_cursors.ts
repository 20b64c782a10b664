import type { Database } from "bun:sqlite";

/**
 * Store-and-forward cursors of destinations with `"resume": true`: per rule id,
 * the stream, the seq the rule started from (history before it is never sent)
 * and the last seq the remote has taken.
 */
export function up(db: Database): void {
  db.run(`CREATE TABLE destination_cursors (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    start_seq INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  )`);
}
