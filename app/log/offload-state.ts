import { Database } from "bun:sqlite";
import { chmodSync, existsSync } from "node:fs";
import { join } from "node:path";

/** The offload record's file in the data dir (bun:sqlite; the hub writes it, compaction processes read it). */
export const OFFLOAD_STATE_FILE = "offload.db";

/** A local Parquet file verified in the remote store: same size and checksum there. */
export interface VerifiedFile {
  /** Path under the logs folder: `stream=…/date=…/<file>.parquet`. */
  path: string;
  key: string;
  size: number;
  md5: string;
  /** The object's ETag when it was verified. */
  etag: string;
  verifiedAt: string;
}

/** A merge that replaced `inputs` (in `dir`, under the logs folder) by `output`: their remote copies go once the output is verified. */
export interface Supersession {
  id: number;
  dir: string;
  inputs: string[];
  output: string;
}

/**
 * What is verified remote, in `DATA_DIR/offload.db`: one row per local file
 * (by its path under the logs folder) whose object was uploaded and checked,
 * and the merges whose inputs' remote objects wait to be deleted. Rows stay
 * after retention removes the local file: the remote object is then the log's
 * only copy, and the file is not uploaded again.
 */
export class OffloadState {
  private constructor(private readonly db: Database) {}

  /** Opens (creating) the record in `dataDir`. */
  static open(dataDir: string): OffloadState {
    const file = join(dataDir, OFFLOAD_STATE_FILE);
    const db = new Database(file, { create: true, strict: true });
    chmodSync(file, 0o600);
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA busy_timeout = 5000");
    // No fsync per commit (the hub writes a row per uploaded file and must not wait on the disk): a
    // power cut may lose the last rows, and losing one is safe: that file counts as not verified
    // again, so retention keeps it and it is uploaded and checked once more.
    db.run("PRAGMA synchronous = NORMAL");
    db.run("CREATE TABLE IF NOT EXISTS verified (path TEXT PRIMARY KEY, key TEXT NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL, etag TEXT NOT NULL, verified_at TEXT NOT NULL)");
    db.run("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)");
    // Keys this box began an upload to, in a store (`target key`): an object at a key not here is another box's.
    db.run("CREATE TABLE IF NOT EXISTS written (target_key TEXT PRIMARY KEY)");
    db.run("CREATE TABLE IF NOT EXISTS superseded (id INTEGER PRIMARY KEY AUTOINCREMENT, dir TEXT NOT NULL, inputs TEXT NOT NULL, output TEXT NOT NULL)");
    return new OffloadState(db);
  }

  /** The record in `dataDir` when offloading was ever on there (null: there is none). */
  static openIfExists(dataDir: string): OffloadState | null {
    return existsSync(join(dataDir, OFFLOAD_STATE_FILE)) ? OffloadState.open(dataDir) : null;
  }

  get(path: string): VerifiedFile | null {
    const r = this.db.query<{ path: string; key: string; size: number; md5: string; etag: string; verified_at: string }, [string]>("SELECT * FROM verified WHERE path = ?").get(path);
    return r ? { path: r.path, key: r.key, size: r.size, md5: r.md5, etag: r.etag, verifiedAt: r.verified_at } : null;
  }

  /** Every verified path. */
  verifiedPaths(): Set<string> {
    return new Set(this.db.query<{ path: string }, []>("SELECT path FROM verified").all().map((r) => r.path));
  }

  /** Every verified path with the size it was verified with. */
  verifiedSizes(): Map<string, number> {
    return new Map(this.db.query<{ path: string; size: number }, []>("SELECT path, size FROM verified").all().map((r) => [r.path, r.size]));
  }

  /** Count and bytes of every verified file (also those retention has removed locally). */
  totals(): { files: number; bytes: number } {
    const r = this.db.query<{ n: number; b: number | null }, []>("SELECT count(*) AS n, sum(size) AS b FROM verified").get()!;
    return { files: r.n, bytes: r.b ?? 0 };
  }

  record(v: VerifiedFile): void {
    this.db.run("INSERT INTO verified (path, key, size, md5, etag, verified_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET key = excluded.key, size = excluded.size, md5 = excluded.md5, etag = excluded.etag, verified_at = excluded.verified_at",
      [v.path, v.key, v.size, v.md5, v.etag, v.verifiedAt]);
  }

  forget(path: string): void {
    this.db.run("DELETE FROM verified WHERE path = ?", [path]);
  }

  /** Notes that this box is about to write `key` in the store `target` (before the upload starts). */
  writing(target: string, key: string): void {
    this.db.run("INSERT OR IGNORE INTO written (target_key) VALUES (?)", [`${target} ${key}`]);
  }

  /** Whether this box ever began writing `key` in the store `target`. */
  wrote(target: string, key: string): boolean {
    return this.db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM written WHERE target_key = ?").get(`${target} ${key}`)!.n > 0;
  }

  /** The store (endpoint, bucket, prefix) the verified rows were verified in ("" before the first). */
  target(): string {
    return this.db.query<{ value: string }, []>("SELECT value FROM meta WHERE name = 'target'").get()?.value ?? "";
  }

  /**
   * Moves to another store: the files still here (`present`, paths under the
   * logs folder, listed beforehand) count as not verified until uploaded there;
   * rows of files retention removed stay (their only copy is in the store they
   * went to). Rows are forgotten a batch at a time, the event loop free in
   * between (a year of small files is 100,000 rows); the new store is noted
   * last, so a crash in between only makes the next start do it again.
   */
  async retarget(target: string, present: Set<string>, batch = 500): Promise<void> {
    const page = this.db.query<{ path: string }, [string, number]>("SELECT path FROM verified WHERE path > ? ORDER BY path LIMIT ?");
    const forget = this.db.transaction((paths: string[]) => {
      for (const p of paths) this.forget(p);
    });
    for (let after = ""; ;) {
      const paths = page.all(after, batch).map((r) => r.path);
      if (paths.length === 0) break;
      forget(paths.filter((p) => present.has(p)));
      after = paths.at(-1)!;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.db.run("INSERT INTO meta (name, value) VALUES ('target', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", [target]);
  }

  /** Notes a merge in the logs folder (called by the merge before it renames its output into place). */
  supersede(dir: string, inputs: string[], output: string): void {
    // This one is fsynced (the merge runs in a compaction process, where waiting is fine): lost, the
    // replaced files' objects would stay in the store beside the merged one's.
    this.db.run("PRAGMA synchronous = FULL");
    this.db.run("INSERT INTO superseded (dir, inputs, output) VALUES (?, ?, ?)", [dir, JSON.stringify(inputs), output]);
    this.db.run("PRAGMA synchronous = NORMAL");
  }

  supersessions(): Supersession[] {
    return this.db.query<{ id: number; dir: string; inputs: string; output: string }, []>("SELECT * FROM superseded ORDER BY id").all()
      .map((r) => ({ id: r.id, dir: r.dir, inputs: JSON.parse(r.inputs) as string[], output: r.output }));
  }

  settled(id: number): void {
    this.db.run("DELETE FROM superseded WHERE id = ?", [id]);
  }

  close(): void {
    this.db.close();
  }
}
