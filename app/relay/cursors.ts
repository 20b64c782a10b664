import type { Database } from "bun:sqlite";

/** A resume destination's cursor: where the rule began, and the last seq the remote has taken. */
export interface Cursor {
  stream: string;
  /** The stream's last seq when the rule was created: nothing before it is ever sent. */
  startSeq: number;
  seq: number;
}

/** How often a moving cursor is written to the settings store (and always when a destination stops). */
const WRITE_INTERVAL_MS = 1000;

/**
 * The cursors of store-and-forward destinations, in the settings store so they
 * survive a restart. A cursor moves often (every acknowledgement), so it is
 * written at most once a second while it moves, and on `flush`: after a crash
 * it is at most a second behind, which only means re-sending (towards a
 * Switchyard the remote's own answer decides anyway).
 */
export class DestinationCursors {
  private readonly dirty = new Map<string, Cursor>();
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly db: Database) {}

  get(id: string): Cursor | null {
    const pending = this.dirty.get(id);
    if (pending) return { ...pending };
    const row = this.db.query<{ stream: string; start_seq: number; seq: number }, [string]>("SELECT stream, start_seq, seq FROM destination_cursors WHERE id = ?").get(id);
    return row ? { stream: row.stream, startSeq: row.start_seq, seq: row.seq } : null;
  }

  /** Writes a new cursor at once (a rule created or changed). */
  create(id: string, c: Cursor): void {
    this.dirty.delete(id);
    this.write(id, c);
  }

  /** Moves a cursor; written within a second. */
  move(id: string, c: Cursor): void {
    this.dirty.set(id, { ...c });
    this.timer ??= setTimeout(() => this.flush(), WRITE_INTERVAL_MS);
  }

  /** Writes every moved cursor now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const moved = [...this.dirty];
    this.dirty.clear();
    for (const [id, c] of moved) this.write(id, c);
  }

  remove(id: string): void {
    this.dirty.delete(id);
    this.db.run("DELETE FROM destination_cursors WHERE id = ?", [id]);
  }

  removeAll(): void {
    this.dirty.clear();
    this.db.run("DELETE FROM destination_cursors");
  }

  private write(id: string, c: Cursor): void {
    this.db.run(
      "INSERT INTO destination_cursors (id, stream, start_seq, seq) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET stream = excluded.stream, start_seq = excluded.start_seq, seq = excluded.seq, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
      [id, c.stream, c.startSeq, c.seq],
    );
  }
}
