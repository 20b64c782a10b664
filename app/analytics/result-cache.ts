/**
 * Answers of recent queries, kept by the query process so that the same SQL
 * over the same data is answered without running it again (a dashboard's
 * panels refreshed by several viewers, the same history page reloaded). An
 * answer is kept under the exact data version it was computed on (see
 * QueryEngine.dataVersion: any record read from the spool, any segment
 * dropped, any change of the Parquet files makes a new version), so it is
 * never served once the data changed. Bounded in bytes (setting
 * query_cache_mb), least recently used first out.
 *
 * Only SQL whose answer depends on nothing but the view `messages` is kept:
 * not when it calls a function whose value changes by itself (now(), random(),
 * current_date, …) nor when it reads anything but the view (files by path,
 * table functions, DuckDB's own state).
 */

/** Functions and keywords whose value changes without the data changing, or that read beyond the view. */
const UNCACHEABLE = new RegExp(
  [
    // time and randomness
    "now", "today", "random", "setseed", "uuid\\w*", "gen_random_uuid", "current_\\w+", "get_current_\\w+", "localtime\\w*", "transaction_timestamp", "statement_timestamp",
    "nextval", "currval", "age",
    // DuckDB's macros over current_timestamp, and the transaction's number
    "ago", "pg_conf_load_time", "pg_postmaster_start_time", "txid_current",
    // files and other relations read by name
    "read_\\w+", "glob", "parquet_\\w+", "sniff_csv", "\\w+_scan", "query", "query_table", "duckdb_\\w+", "pragma_\\w+", "getenv", "which_secret", "icu_\\w+",
  ].map((f) => `\\b${f}\\b`).join("|"),
  "i",
);

/**
 * True when `sql`'s answer depends only on the data (see the file comment).
 * Conservative: a word like `random` or `read_csv` anywhere (even in a column
 * name or a comment), or a quoted name that could be a file (a `/` or a dot),
 * makes it uncacheable.
 */
export function cacheable(sql: string): boolean {
  if (UNCACHEABLE.test(sql)) return false;
  // 'x.parquet' or "/dir/file" in FROM is read as a file by DuckDB (a replacement scan).
  for (const m of sql.matchAll(/'((?:[^']|'')*)'|"((?:[^"]|"")*)"/g)) {
    const text = m[1] ?? m[2] ?? "";
    if (/[/\\]|\.\w/.test(text)) return false;
  }
  return true;
}

interface Entry {
  body: string;
  rows: number;
  bytes: number;
}

/**
 * A least-recently-used map of answers, bounded in bytes (a JS string's
 * characters count twice), all of one data version: the first lookup at a new
 * version drops every answer (versions only go up: those can never be served).
 */
export class ResultCache {
  private readonly entries = new Map<string, Entry>();
  private version: string | null = null;
  private used = 0;
  readonly stats = { hits: 0, misses: 0, stored: 0, evicted: 0 };

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The answer kept for `key` at data version `version`, if any. */
  get(key: string, version: string): { body: string; rows: number } | undefined {
    if (version !== this.version) {
      this.entries.clear();
      this.used = 0;
      this.version = version;
    }
    const e = this.entries.get(key);
    if (!e) {
      this.stats.misses++;
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, e); // most recently used last
    this.stats.hits++;
    return e;
  }

  /**
   * Keeps an answer computed at `version`; not when the data has moved on since
   * (a lookup at a newer version came meanwhile), nor one larger than a quarter
   * of the cache (it would push out many small ones).
   */
  set(key: string, version: string, body: string, rows: number): void {
    const bytes = 2 * (body.length + key.length) + 200;
    if (this.maxBytes <= 0 || bytes > this.maxBytes / 4 || version !== this.version) return;
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    this.entries.set(key, { body, rows, bytes });
    this.used += bytes;
    this.stats.stored++;
    for (const [k, e] of this.entries) {
      if (this.used <= this.maxBytes) break;
      this.remove(k, e);
      this.stats.evicted++;
    }
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    this.used -= e.bytes;
  }
}
