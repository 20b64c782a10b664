import type { Database } from "bun:sqlite";

/** Relay destination rules and stream feed rules, kept across restarts. */
export function up(db: Database): void {
  db.run(`CREATE TABLE destinations (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  )`);
  db.run(`CREATE TABLE feeds (
    stream TEXT PRIMARY KEY,
    feeds TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  )`);
}
