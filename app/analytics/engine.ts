import { DuckDBInstance, JsonDuckDBValueConverter, StatementType, type DuckDBConnection } from "@duckdb/node-api";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { segmentNumber } from "../log/compaction.ts";
import { datePartitions } from "../log/partitions.ts";
import { loadSegments } from "../log/rows.ts";
import { Spool } from "../log/spool.ts";

/** Where the log lives and how much a query may take. */
export interface QueryEngineOptions {
  logsDir: string;
  spoolDir: string;
  /** DuckDB's spill folder (under the data dir). */
  tempDir: string;
  threads?: number;
  memoryLimit?: string;
  /** A folder the engine may also write Parquet exports into (and read back). */
  exportDir?: string;
}

/** One query's answer. */
export interface QueryResult {
  columns: string[];
  rows: Record<string, unknown>[];
  /** DuckDB's type of each column (e.g. TIMESTAMP, BIGINT), when known. */
  types?: string[];
}

/** A query refused or failed; `message` says why, for the user. */
export class QueryError extends Error {
  override name = "QueryError";
}

const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** True when the log has a Parquet file yet (read_parquet fails on a glob that matches nothing). */
function hasParquet(logsDir: string): boolean {
  return datePartitions(logsDir).some((p) => readdirSync(p.path).some((f) => f.endsWith(".parquet")));
}

/**
 * A DuckDB for querying the log, sandboxed with DuckDB's own controls: it may
 * read the Parquet folder and nothing else (`allowed_directories`,
 * `enable_external_access = false`, no extension loading), its configuration is
 * locked, and only single SELECT statements run. The view `messages(ts, stream,
 * seq, origin, kind, data, date)` covers the Parquet files and the spool's
 * not-yet-compacted records (loaded when the engine opens).
 */
export class QueryEngine {
  private constructor(private readonly db: DuckDBInstance, private readonly conn: DuckDBConnection) {}

  static async open(opts: QueryEngineOptions): Promise<QueryEngine> {
    mkdirSync(opts.tempDir, { recursive: true });
    const db = await DuckDBInstance.create(":memory:", {
      threads: String(opts.threads ?? 1),
      memory_limit: opts.memoryLimit ?? "128MB",
      autoinstall_known_extensions: "false",
      autoload_known_extensions: "false",
    });
    const conn = await db.connect();
    await conn.run(`SET temp_directory = ${q(opts.tempDir)}`);
    const segments = existsSync(opts.spoolDir) ? Spool.segments(opts.spoolDir).map((f) => join(opts.spoolDir, f)) : [];
    // A segment compacted while this engine opens is either read here (it was still in the
    // spool) or found as Parquet, never both: Parquet files made from a segment read here
    // (named seg<N>_<i>.parquet) are left out of the view.
    const loaded: string[] = [];
    await loadSegments(conn, "spool_tail", segments, { skipMissing: true, loaded });
    const numbers = loaded.map(segmentNumber).filter((n) => /^\d+$/.test(n));
    const notLoaded = numbers.length ? ` WHERE NOT regexp_matches(filename, '/seg(${numbers.join("|")})_[0-9]+\\.parquet$')` : "";
    const parquet = hasParquet(opts.logsDir)
      ? `SELECT ts, stream, seq, origin, kind, data, date FROM read_parquet(${q(join(opts.logsDir, "**", "*.parquet"))}, hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR}, filename = true)${notLoaded} UNION ALL `
      : "";
    await conn.run(`CREATE VIEW messages AS ${parquet}SELECT make_timestamp(ts_us) AS ts, stream, seq, origin, kind, data, CAST(make_timestamp(ts_us) AS DATE) AS date FROM spool_tail`);
    const allowed = [opts.logsDir, opts.tempDir, ...(opts.exportDir ? [opts.exportDir] : [])].map((d) => q(d + "/"));
    await conn.run(`SET allowed_directories = [${allowed.join(", ")}]`);
    await conn.run("SET enable_external_access = false");
    await conn.run("SET lock_configuration = true");
    return new QueryEngine(db, conn);
  }

  /**
   * Runs one SELECT, returning at most `rowLimit` rows (more is an error that
   * says to add a LIMIT) within `timeoutMs` (the query is interrupted after).
   */
  async query(sql: string, opts: { rowLimit?: number; timeoutMs?: number; params?: (string | number | bigint)[] } = {}): Promise<QueryResult> {
    const rowLimit = opts.rowLimit ?? 100_000;
    const prepared = await this.prepareSelect(sql);
    if (opts.params) prepared.bind(opts.params.map((v) => (typeof v === "number" && Number.isInteger(v) ? BigInt(v) : v)));
    return this.withTimeout(opts.timeoutMs ?? 30_000, async () => {
      const reader = await prepared.streamAndReadUntil(rowLimit + 1);
      if (reader.currentRowCount > rowLimit) throw new QueryError(`the result has more than ${rowLimit} rows; add a LIMIT or aggregate`);
      return { columns: reader.columnNames(), rows: reader.getRowObjectsJson() as Record<string, unknown>[], types: reader.columnTypes().map((t) => t.toString()) };
    });
  }

  /**
   * Runs one SELECT and hands its rows over chunk by chunk as DuckDB produces
   * them (for streamed answers). Past `rowLimit` rows, or `timeoutMs`, it stops
   * with a QueryError (after the chunks already handed over). Returns the rows sent.
   */
  async streamRows(sql: string, opts: { rowLimit: number; timeoutMs: number }, onChunk: (columns: string[], rows: Record<string, unknown>[]) => void): Promise<number> {
    const prepared = await this.prepareSelect(sql);
    return this.withTimeout(opts.timeoutMs, async () => {
      const result = await prepared.stream();
      const columns = result.columnNames();
      onChunk(columns, []); // the columns are known now, even when no row follows
      let sent = 0;
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        const rows = chunk.convertRows(JsonDuckDBValueConverter).map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
        if (sent + rows.length > opts.rowLimit) {
          onChunk(columns, rows.slice(0, opts.rowLimit - sent));
          throw new QueryError(`the result has more than ${opts.rowLimit} rows; it was cut there: add a LIMIT or aggregate`);
        }
        onChunk(columns, rows);
        sent += rows.length;
      }
      return sent;
    });
  }

  /**
   * Writes the result of one SELECT to `path` (inside the engine's export folder)
   * as a zstd Parquet file; returns the rows written.
   */
  async exportParquet(sql: string, path: string, timeoutMs = 30_000): Promise<number> {
    await this.prepareSelect(sql);
    const body = sql.trim().replace(/;\s*$/, "");
    return this.withTimeout(timeoutMs, async () => {
      const r = await this.conn.runAndReadAll(`COPY (${body}\n) TO ${q(path)} (FORMAT parquet, COMPRESSION zstd)`);
      return Number(r.getRows()[0]?.[0] ?? 0);
    });
  }

  /** Checks that `sql` is exactly one SELECT (by DuckDB's own parser) and prepares it. */
  private async prepareSelect(sql: string) {
    let statements;
    try {
      statements = await this.conn.extractStatements(sql);
    } catch (err) {
      throw new QueryError((err as Error).message);
    }
    if (statements.count !== 1) throw new QueryError(`send exactly one statement (got ${statements.count}); allowed: a single SELECT over the view messages`);
    let prepared;
    try {
      prepared = await statements.prepare(0);
    } catch (err) {
      throw new QueryError((err as Error).message);
    }
    if (prepared.statementType !== StatementType.SELECT) {
      throw new QueryError(`only SELECT queries run here (this is a ${StatementType[prepared.statementType] ?? "other"} statement); the log is read-only`);
    }
    return prepared;
  }

  /** Runs `fn`, interrupting DuckDB after `timeoutMs`; every failure becomes a QueryError. */
  private async withTimeout<T>(timeoutMs: number, fn: () => Promise<T>): Promise<T> {
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; this.conn.interrupt(); }, timeoutMs);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof QueryError) throw err;
      if (timedOut) throw new QueryError(`the query took longer than ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`} and was stopped`);
      throw new QueryError((err as Error).message);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.conn.closeSync();
    this.db.closeSync();
  }
}

/** Renders a result as an aligned text table, CSV, a JSON array or NDJSON. */
export function formatResult(r: QueryResult, format: "table" | "csv" | "json" | "ndjson" | "grid"): string {
  if (format === "grid") return JSON.stringify({ columns: r.columns, types: r.types ?? [], rows: r.rows.map((row) => r.columns.map((c) => row[c] ?? null)) });
  const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  if (format === "json") return JSON.stringify(r.rows) + "\n";
  if (format === "ndjson") return r.rows.map((row) => JSON.stringify(row)).join("\n") + (r.rows.length ? "\n" : "");
  if (format === "csv") {
    const esc = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
    return [r.columns.map(esc).join(","), ...r.rows.map((row) => r.columns.map((c) => esc(cell(row[c]))).join(","))].join("\n") + "\n";
  }
  const widths = r.columns.map((c) => Math.max(c.length, ...r.rows.map((row) => cell(row[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(r.columns), line(widths.map((w) => "-".repeat(w))), ...r.rows.map((row) => line(r.columns.map((c) => cell(row[c])))), `(${r.rows.length} row${r.rows.length === 1 ? "" : "s"})`].join("\n") + "\n";
}
