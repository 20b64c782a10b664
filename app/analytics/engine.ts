import { DuckDBInstance, DuckDBResultReader, JsonDuckDBValueConverter, StatementType, type DuckDBAppender, type DuckDBConnection, type DuckDBPreparedStatement, type DuckDBResult } from "@duckdb/node-api";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { segmentNumber, type LoadedSegment } from "../log/compaction.ts";
import { datePartitions, logChangeMark, logFileProblem } from "../log/partitions.ts";
import { quarantineFile, type Quarantined } from "../log/quarantine.ts";
import { HEADER_BYTES, locateRecord, MAX_BODY_BYTES, scanRecords, type RecordFields } from "../log/record.ts";
import { LOG_ROW_COLUMNS, LogRowChunks } from "../log/rows.ts";
import { Spool } from "../log/spool.ts";
import { tookTooLong } from "./protocol.ts";
import { mayPushDown, planPushdown, SETTLED_PLACEHOLDER, VIEW_PARTS, type Pushdown } from "./pushdown.ts";
import { cacheable } from "./result-cache.ts";
import { mayHaveScope, planStreamScope, scopeStreams, type StreamScope } from "./stream-scope.ts";

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
  /** This node's id: the `node` column of its own rows (default "local"). */
  nodeId?: string;
  /**
   * Query offloaded partitions instead of this node's log: Parquet files in a
   * local cache of the remote store, laid out `dir/node=…/stream=…/date=…/*.parquet`
   * (the node, stream and date columns come from those folders).
   */
  remote?: { dir: string; files: string[] };
}

/**
 * Rows per row group of a Parquet export (5 of DuckDB's vectors). The byte
 * bound compaction uses needs insertion order off, which queries keep on.
 */
const EXPORT_ROW_GROUP = 10_240;

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

/** Where the engine has read a spool segment up to. */
interface TailSegment {
  number: number;
  /** The table holding its rows (a segment read again gets a new one: see doRefresh). */
  table: string;
  offset: number;
  /** Messages in its table (a segment holding none yet is left out of the view). */
  rows: number;
  /** A bad record stopped reading a sealed segment here (reported once). */
  stuck?: string;
  /** A read failed part-way: the table may hold some of its rows, the offset is before them. */
  reread?: boolean;
  /** Sealed (a newer segment was listed) and read to its end: its table no longer changes (messages_settled). */
  complete?: boolean;
  /** Where the last record read starts, and its header (length and CRC), to notice the file rewritten under it. */
  lastStart?: number;
  lastHeader?: string;
  /** How far its rows are in its table and committed (offset runs ahead while a read goes on). */
  visible?: number;
}

/** A query's SQL and parameters, for the streams it reads (stream-scope.ts). */
export interface QueryScope {
  sql: string;
  params?: readonly (string | number | bigint)[];
}

/** True when the last record read from `seg` is still where it was (its length and CRC unchanged). */
function sameHeader(fd: number, seg: TailSegment): boolean {
  if (seg.lastStart === undefined || seg.lastHeader === undefined) return true;
  const header = Buffer.alloc(HEADER_BYTES);
  return readSync(fd, header, 0, HEADER_BYTES, seg.lastStart) === HEADER_BYTES && header.toString("hex") === seg.lastHeader;
}

/** Reads up to `length` bytes of `fd` at `position` into `buf` (from its start); returns how many (fewer at the file's end). */
function readAt(fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** `sql` as DuckDB's parser reads it: json_serialize_sql's tree (pushdown.ts, stream-scope.ts). */
async function parseTree(conn: DuckDBConnection, sql: string): Promise<unknown> {
  const parsed = await conn.runAndReadAll("SELECT json_serialize_sql(?::VARCHAR)", [sql]);
  return JSON.parse(String(parsed.getRows()[0]![0]));
}

/** Prepared statements kept per connection (see QueryEngine.prepare). */
const PLANS_PER_CONNECTION = 32;
/** SQL texts whose pushdown (or its absence) is remembered. */
const PUSHED_KEPT = 256;

/** Longest a listing of the Parquet folder is reused for (see QueryEngine.listing). */
const RELIST_MS = 10_000;
/** Most unread spool bytes looked at for a query's streams (quietFor): past that, reading them is as cheap. */
const QUIET_PEEK_BYTES = 1024 * 1024;
/** Partials kept (one per SQL text), and the most groups one may hold: see partials. */
const PARTIALS_KEPT = 32;
const PARTIAL_ROWS = 10_000;

/** Bytes of a segment read at once. */
const READ_WINDOW = 4 * 1024 * 1024;
/** Spool bytes read between garbage collections (a big first read must not pile up garbage). */
const GC_EVERY_BYTES = 16 * 1024 * 1024;

/** The size of the record at `offset` of a segment file (header included), or 0 when unknown. */
function nextRecordBytes(fd: number, offset: number): number {
  const header = Buffer.alloc(HEADER_BYTES);
  if (readSync(fd, header, 0, HEADER_BYTES, offset) < HEADER_BYTES) return 0;
  const body = header.readUInt32LE(0);
  return body <= MAX_BODY_BYTES ? HEADER_BYTES + body : 0;
}


/**
 * A DuckDB for querying the log, sandboxed with DuckDB's own controls: it may
 * read the Parquet folder and nothing else (`allowed_directories`,
 * `enable_external_access = false`, no extension loading), its configuration is
 * locked, and only single SELECT statements run. The view `messages(ts, stream,
 * seq, origin, kind, data, date, node)` covers the Parquet files and the spool's
 * not-yet-compacted records (`node` is this node's id), or, with `remote`, the
 * offloaded partitions in the remote cache.
 *
 * The engine stays open and warm: before each query `refresh()` appends the
 * records the spool gained since the last one (reading each segment from where
 * it stopped), drops the rows of segments that compaction removed, and points
 * the view at the Parquet files there are now. A segment is in exactly one of
 * the two: the Parquet files made from a segment still read here
 * (`seg<N>_….parquet`) are left out of the view until the segment is gone.
 * Several queries may run at once, each on a connection of its own.
 */
export class QueryEngine {
  private readonly free: DuckDBConnection[] = [];
  private readonly tail = new Map<string, TailSegment>();
  /** Parquet files checked readable, by path, with the size and mtime they had then. */
  private readonly checked = new Map<string, string>();
  private viewKey: string | null = null;
  /**
   * The Parquet files last listed, when, and against which spool segments and
   * change mark. The folder is listed again when the segments changed, when
   * compaction, a merge or retention marked a change (markLogChanged), after a
   * query found a listed file gone, before a streamed answer (which cannot be
   * retried), and RELIST_MS after the last time (files changed by hand): a box
   * with a year of partitions does not list thousands of folders per query.
   */
  private listing: { files: string[]; at: number; tail: string } | null = null;
  /** The size and mtime of each file of the last listing. */
  private stamps = "";
  /**
   * Goes up each time what the view shows may have changed: rows read from the
   * spool (made visible), a segment's table replaced or dropped, the view
   * changed, a listed Parquet file changed (see dataVersion).
   */
  private generation = 0;
  /** The refresh running now, and the one that starts when it ends (see refresh()). */
  private current: Promise<void> | null = null;
  /** True while the refresh running now may change the view (not a followTail). */
  private currentWithView = false;
  /** Each SQL text looked at for the streams it reads (stream-scope.ts), or null: it reads others too. */
  private readonly scopes = new Map<string, StreamScope | null>();
  private queued: Promise<void> | null = null;
  private closed = false;
  /** The queries running now, by the number each took when it started (see toDrop). */
  private readonly runningQueries = new Set<number>();
  private nextQuery = 0;
  /**
   * Tables of segments gone from the view, with the number the next query
   * would take when they went: a query started before may have bound them (its
   * view named them), so each is dropped once no such query runs.
   */
  private readonly toDrop: { table: string; after: number }[] = [];
  /** Tables of segments read anew in the refresh going on: still in the view until it is made again. */
  private readonly retired: string[] = [];
  /** Tables of reads anew that failed part-way (never in a view): the next read anew drops them. */
  private readonly abandoned = new Set<string>();
  /** Segments read anew so far (each into a table of its own name). */
  private rereads = 0;
  /**
   * Each connection's prepared statements, by SQL, least recently used first,
   * and the view they were prepared over (see prepare and forgetPlans).
   */
  private readonly plans = new WeakMap<DuckDBConnection, { view: number; byText: Map<string, DuckDBPreparedStatement> }>();
  /** Goes up each time the view `messages` is replaced. */
  private viewNumber = 0;
  /**
   * Statements prepared, runs that reused one, statements run with their
   * aggregates pushed below the union, partials, and refreshes skipped for a
   * query whose streams had nothing unread (quietFor) (for tests and stats).
   */
  readonly planStats = { prepared: 0, reused: 0, pushedDown: 0, partialsComputed: 0, overPartials: 0, partialsStale: 0, refreshesSkipped: 0 };
  /** True while `messages` is the local view, whose parts (VIEW_PARTS) exist beside it. */
  private parted = false;
  /** Lower-case names of the functions pushdown.ts must not take for scalar ones: aggregates and macros. */
  private opaque: ReadonlySet<string> = new Set();
  /** Each SQL text looked at for the pushdown (pushdown.ts): the text to run instead, or null (run it as it is). */
  private readonly pushed = new Map<string, string | null>();
  /** The statements prepared from a rewrite (pushedDown): one that fails as it runs gives way to the original. */
  private readonly rewrites = new WeakSet<DuckDBPreparedStatement>();
  /**
   * Goes up before the view is replaced or a tail table is made anew: a
   * partial (below) computed at one value holds for a statement that bound
   * its view at the same value (it is raised before DuckDB is asked, so a
   * statement that found the new view finds the new value too).
   */
  private settledEpoch = 0;
  /**
   * For a pushed-down aggregate whose answer depends on the data alone
   * (cacheable), the settled part's aggregate (pushdown.ts settled()) and the
   * rewritten statement that reads it from a table (buildOver, with
   * SETTLED_PLACEHOLDER for the table's name); null: none for this SQL.
   */
  private readonly partialPlans = new Map<string, { settled: string; over: string; columns: string[]; types: string[] } | null>();
  /**
   * The partials kept, by SQL text, least recently used first: the settled
   * part's aggregate as a table, and the epoch it was computed at. During
   * ingest a dashboard's count by stream then reads the growing segment's
   * rows alone, not every Parquet file and sealed segment again each time.
   */
  private readonly partials = new Map<string, { table: string; epoch: number }>();
  private partialNumber = 0;
  /** Statements reading a partial, by the epoch of its rows: checked once the run has bound its view. */
  private readonly overPartial = new WeakMap<DuckDBPreparedStatement, number>();
  /** Told about each file moved to quarantine (unreadable Parquet). */
  onQuarantine: (q: Quarantined) => void = () => {};

  private constructor(private readonly opts: QueryEngineOptions, private readonly db: DuckDBInstance, private readonly admin: DuckDBConnection) {}

  static async open(opts: QueryEngineOptions, onQuarantine?: (q: Quarantined) => void): Promise<QueryEngine> {
    mkdirSync(opts.tempDir, { recursive: true });
    if (opts.exportDir) mkdirSync(opts.exportDir, { recursive: true });
    const db = await DuckDBInstance.create(":memory:", {
      threads: String(opts.threads ?? 1),
      memory_limit: opts.memoryLimit ?? "128MB",
      autoinstall_known_extensions: "false",
      autoload_known_extensions: "false",
      // Every query runs as a prepared statement, which may run over tables that have grown since it
      // was planned: kept and run again, or just prepared while a follow appends. These two plan by the
      // values the tables held then: a sort packs seq into the range it saw (seq 257 came back as 1), a
      // filter the statistics said no row passes is dropped (WHERE seq > max then gave 0 rows), a GROUP
      // BY sized by them fails. Off, every plan holds for any data. (DuckDB's own fix, which skips
      // statistics propagation for prepared statements, duckdb/duckdb#24696 for #23704, is newer than
      // the release pinned here: when it is in, this can go.)
      disabled_optimizers: "statistics_propagation,compressed_materialization",
    });
    const admin = await db.connect();
    await admin.run(`SET temp_directory = ${q(opts.tempDir)}`);
    // The log's times are UTC without a zone (TIMESTAMP). Every connection works in UTC, whatever the
    // box's zone, and now() gives UTC as a TIMESTAMP too: `ts > now() - INTERVAL 1 HOUR` then compares
    // like with like, exactly, and DuckDB can skip Parquet row groups by their ts statistics (a
    // TIMESTAMP WITH TIME ZONE on one side would cast every row's ts and read every file: 20x slower).
    await admin.run("SET GLOBAL TimeZone = 'UTC'");
    await admin.run("CREATE MACRO now() AS current_localtimestamp()");
    // Each spool segment gets a table of its own (tail_<N>), dropped when the segment is gone: DuckDB
    // gives a dropped table's memory back, where deleted rows would stay. spool_tail stays empty. The
    // tables live in an in-memory database that compresses them as a file's would (an in-memory one
    // does not by default): a count by stream over a million spooled rows took 14 ms uncompressed, 5
    // here (a stream's name kept once per block, not per row), for about 0.15 µs more per record read.
    await admin.run(`CREATE TABLE spool_tail (${LOG_ROW_COLUMNS})`);
    await admin.run(`ATTACH ':memory:' AS ${TAIL_DB} (COMPRESS)`);
    const allowed = [opts.logsDir, opts.tempDir, ...(opts.exportDir ? [opts.exportDir] : []), ...(opts.remote ? [opts.remote.dir] : [])].map((d) => q(d + "/"));
    await admin.run(`SET allowed_directories = [${allowed.join(", ")}]`);
    await admin.run("SET enable_external_access = false");
    await admin.run("SET lock_configuration = true");
    const engine = new QueryEngine(opts, db, admin);
    // now is the macro above: a scalar.
    const opaque = await admin.runAndReadAll("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE function_type IN ('aggregate', 'macro', 'table_macro') AND function_name <> 'now'");
    engine.opaque = new Set(opaque.getRows().map((r) => String(r[0])));
    if (onQuarantine) engine.onQuarantine = onQuarantine;
    await engine.refresh();
    return engine;
  }

  /** The folder Parquet exports are written to (null: exports are off). */
  get exportDir(): string {
    if (!this.opts.exportDir) throw new QueryError("Parquet exports are not enabled in this engine");
    return this.opts.exportDir;
  }

  /**
   * Brings the view up to date with the spool and the Parquet folder, by a
   * refresh that starts after this call: one refresh runs at a time, and the
   * callers that come while one runs share the next, which starts when it ends
   * (a refresh already going may have read the spool before their messages
   * were acknowledged, or be a followTail that leaves the view as it was).
   */
  refresh(): Promise<void> {
    if (this.closed) return Promise.reject(new QueryError("the query engine is closed"));
    if (!this.current) return this.startRefresh(true);
    this.queued ??= this.current.catch(() => {}).then(() => {
      this.queued = null;
      return this.startRefresh(true);
    });
    return this.queued;
  }

  /**
   * Reads what the spool gained since the last read, without touching the view
   * (the query process calls this between queries, so that a query during heavy
   * ingest finds the tail mostly read and pays only for the last moments).
   * Skipped while a refresh is going on or waiting (null). Returns how many
   * messages it read, so the caller can pace itself by the rate they come at.
   */
  async followTail(): Promise<number | null> {
    if (this.closed) return 0;
    if (this.current || this.queued) return null;
    const before = this.recordsRead;
    await this.startRefresh(false);
    return this.recordsRead - before;
  }

  /** Spool records read so far, by every refresh (a query's, a follow's): their rate paces the follows. */
  get tailRecordsRead(): number {
    return this.recordsRead;
  }

  private recordsRead = 0;

  private startRefresh(withView: boolean): Promise<void> {
    const run: Promise<void> = this.doRefresh(withView).finally(() => {
      if (this.current === run) this.current = null;
    });
    this.current = run;
    this.currentWithView = withView;
    return run;
  }

  /**
   * The version of the data the view shows, after a refresh that starts after
   * this call (as before a query; none when the query of `scope` reads only
   * streams with nothing unread, as its run would skip it too): two calls that
   * give the same version saw the same data, so an answer computed at one
   * version may be served again at it (result-cache.ts). The version goes up
   * only once the change is visible to queries, and a query run after reading
   * it sees at least that data.
   */
  async dataVersion(scope?: QueryScope): Promise<string> {
    try {
      if (!scope || !(await this.skipsRefresh(scope))) await this.refresh();
    } catch (err) {
      throw new QueryError(`reading the log failed: ${(err as Error).message}`);
    }
    return String(this.generation);
  }

  /**
   * The table holding every record of sealed spool segment `path`, for
   * compaction to write from (compaction.ts) rather than read the file again,
   * with a connection of its own; null when this engine does not hold all of
   * it (read to the file's end, undamaged, unchanged under it). The table
   * stays until the segment is gone and compaction let go of it (release):
   * held as a running query holds the tables its view named (toDrop), for
   * spool retention may remove the segment while compaction reads the table.
   */
  async loadedSegment(path: string): Promise<LoadedSegment | null> {
    if (this.closed || this.opts.remote) return null;
    await this.refresh(); // reads what is left of it
    const seg = this.tail.get(path);
    if (!seg || seg.stuck || seg.reread) return null;
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return null;
    }
    try {
      if (fstatSync(fd).size !== seg.offset || !sameHeader(fd, seg)) return null;
    } finally {
      closeSync(fd);
    }
    const letGo = this.holdTables();
    let conn: DuckDBConnection;
    try {
      conn = this.free.pop() ?? await this.db.connect();
    } catch (err) {
      letGo();
      throw err;
    }
    let released = false;
    return {
      conn, table: seg.table, rows: seg.rows,
      release: () => {
        if (released) return;
        released = true;
        letGo();
        this.giveBack(conn);
      },
    };
  }

  /**
   * Counts the caller as a running query until the returned function is
   * called: the tables of the view as it is now, or after a refresh that
   * starts later, are not dropped meanwhile (toDrop).
   */
  private holdTables(): () => void {
    const ticket = this.nextQuery++;
    this.runningQueries.add(ticket);
    return () => this.runningQueries.delete(ticket);
  }

  /** How far the engine has read each spool segment it holds, in bytes, by file name. */
  tailRead(): Record<string, number> {
    return Object.fromEntries([...this.tail].map(([path, seg]) => [path.slice(path.lastIndexOf("/") + 1), seg.offset]));
  }

  private async doRefresh(withView: boolean): Promise<void> {
    if (this.opts.remote) return this.remoteView();
    const { spoolDir, logsDir } = this.opts;
    const files = existsSync(spoolDir) ? Spool.segments(spoolDir).map((f) => join(spoolDir, f)) : [];
    const present = new Set(files);
    let gone = [...this.tail.keys()].filter((p) => !present.has(p));
    const fields: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
    // Counted within one refresh: a long read (the first, or after a pause) collects as it goes; the
    // small reads of a steady stream never force a collection (a full one stalls the queries waiting).
    let sinceGc = 0;
    for (const [i, path] of files.entries()) {
      const known = this.tail.get(path);
      const number = Number(segmentNumber(path));
      const seg: TailSegment = known ?? { number, table: tailTable(number), offset: 0, rows: 0 };
      let table = seg.table;
      let appender: DuckDBAppender | null = null;
      let rows: LogRowChunks | null = null;
      const rowsBefore = seg.rows;
      let replaced = !known;
      let readAnew = false;
      let failed = false;
      let fd: number;
      try {
        fd = openSync(path, "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        // Compacted since the listing: its Parquet is in place (files move before the segment goes).
        if (known) gone.push(path);
        continue;
      }
      try {
        if (!known) await this.admin.run(`CREATE OR REPLACE TABLE ${table} (${LOG_ROW_COLUMNS})`);
        const size = fstatSync(fd).size;
        if (seg.reread || (seg.offset > 0 && (size < seg.offset || !sameHeader(fd, seg)))) {
          // Replacing a table a query may be about to read is left to the refresh before a query.
          if (!withView) continue;
          // The spool cut back a write that failed (disk full): what was read past the cut was never
          // acknowledged (and new records may be where it was). Or a read of this segment failed
          // part-way (reread). Read this segment again from the start.
          this.settledEpoch++;
          seg.complete = undefined;
          // Into a table of its own: a query that bound the view as it is (its refresh done, its run
          // not yet started) reads the old table whole, never this one half read. The old one goes
          // with the view, once no query that may have bound it runs (toDrop, below).
          // A table an earlier read anew was filling when it failed was never in a view: dropped now.
          if (this.abandoned.delete(table)) await this.admin.run(`DROP TABLE IF EXISTS ${table}`);
          else this.retired.push(table);
          table = seg.table = tailTable(seg.number, ++this.rereads);
          readAnew = true;
          await this.admin.run(`CREATE OR REPLACE TABLE ${table} (${LOG_ROW_COLUMNS})`);
          replaced = true;
          seg.offset = seg.visible = 0;
          seg.rows = 0;
          seg.stuck = undefined;
          seg.reread = undefined;
          seg.lastStart = seg.lastHeader = undefined;
        } else if (seg.complete && size > seg.offset) {
          // Taken for sealed, and written to still: the spool made the next segment's file and then
          // gave it up (its marks could not be written: a full disk), writing on here. Growing again,
          // before its new rows are appended: a partial of it would miss them (see settledEpoch).
          this.settledEpoch++;
          seg.complete = undefined;
        }
        let window = Buffer.allocUnsafe(0);
        let damagedFrom: number | null = null;
        // Read in windows of 4 MiB (or one record, when bigger), collecting the decoded
        // messages' garbage as it goes: a full segment must not take its size twice over.
        while (size > seg.offset && !seg.stuck) {
          const want = Math.min(size - seg.offset, Math.max(READ_WINDOW, nextRecordBytes(fd, seg.offset)));
          if (window.length < want) window = Buffer.allocUnsafe(want);
          const got = readAt(fd, window, want, seg.offset);
          const buf = window.subarray(0, got);
          let o = 0;
          appender ??= await this.admin.createAppender(table.slice(TAIL_DB.length + 1), "main", TAIL_DB);
          rows ??= new LogRowChunks(appender);
          let stop = false;
          let last = -1; // where the last record read in this window starts
          while (o < got) {
            const r = locateRecord(buf, o, fields);
            if (r !== "message" && r !== "marks") {
              if (r === "incomplete" && seg.offset + got < size) break; // the rest is in the next window
              // The segment being written may end in a record still arriving: read it next time.
              // A sealed one is damaged here: the rest is read past the damage, below.
              if (i < files.length - 1 && r !== "incomplete") damagedFrom = seg.offset + o;
              stop = true;
              break;
            }
            // A segment's marks record (each stream's last seq) is no message.
            last = o;
            if (r === "message") {
              rows.addRecord(buf, fields);
              seg.rows++;
              this.recordsRead++;
              o = fields.next;
            } else {
              o += HEADER_BYTES + buf.readUInt32LE(o);
            }
          }
          // The rows point into the window, which the next read overwrites: appended (copied) now.
          rows.flush();
          if (last >= 0) {
            seg.lastStart = seg.offset + last;
            seg.lastHeader = buf.toString("hex", last, last + HEADER_BYTES);
          }
          seg.offset += o;
          sinceGc += o;
          if (sinceGc >= GC_EVERY_BYTES) {
            appender.flushSync();
            Bun.gc(true);
            sinceGc = 0;
          }
          if (stop || o === 0) break;
        }
        if (damagedFrom !== null) {
          // A sealed segment, damaged: read it whole once (as compaction will), resynchronising after
          // each bad record as the spool's reader does, so every intact record is queryable meanwhile.
          const whole = readFileSync(path);
          for (const step of scanRecords(whole)) {
            if (!("record" in step) || step.offset < damagedFrom || !("message" in step.record)) continue;
            appender ??= await this.admin.createAppender(table.slice(TAIL_DB.length + 1), "main", TAIL_DB);
            rows ??= new LogRowChunks(appender);
            rows.addMessage(step.record.message);
            seg.rows++;
            this.recordsRead++;
          }
          seg.offset = whole.length;
          seg.stuck = "damaged: its intact records are read";
        }
        // Listed before a newer segment: sealed before its size was taken, so read to that size it is whole.
        if (i < files.length - 1 && !seg.reread && (seg.stuck !== undefined || seg.offset >= size)) seg.complete = true;
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        closeSync(fd);
        try {
          try {
            rows?.flush();
          } finally {
            appender?.closeSync();
          }
        } catch (err) {
          failed = true;
          throw err;
        } finally {
          // A read that failed part-way (DuckDB refused an append, say) may have committed some of its rows
          // without the offset moving past them, or moved it past rows never committed: the segment is read
          // again from the start, its table replaced, rather than show a message twice or not at all. (A new
          // segment's table is replaced anyway: it is not in the tail yet.)
          if (failed && known) seg.reread = true;
          // This refresh fails before it makes the view: no view named the table it read anew into.
          if (failed && readAnew) this.abandoned.add(table);
          if (failed) seg.complete = undefined;
          else seg.visible = seg.offset; // its rows read are committed now
          // After the close: the rows are visible now (a version read before saw none of them).
          if (replaced || seg.rows !== rowsBefore) this.generation++;
          // A segment read anew: a partial worked out while it was read holds the old table's rows
          // (or part of the new one's), and must not be kept or used past this.
          if (replaced && known) this.settledEpoch++;
        }
      }
      this.tail.set(path, seg);
    }
    await this.dropUnheld();
    // Leaving a segment's table out, like changing the view, waits for the refresh before a query.
    // The table itself goes once no query that may have bound it runs (a refresh for another query,
    // or for compaction, may come while one runs).
    if (!withView) return;
    // Replaced by a table read anew: left out of the view made below, dropped as a gone segment's is.
    for (const table of this.retired.splice(0)) this.toDrop.push({ table, after: this.nextQuery });
    let parquet: string[] = [];
    for (let listAgain = true; listAgain;) {
      for (const p of new Set(gone)) {
        const seg = this.tail.get(p);
        this.tail.delete(p);
        if (seg) this.toDrop.push({ table: seg.table, after: this.nextQuery });
        this.generation++;
      }
      // Listed after the spool was read: a segment compacted meanwhile is found here as Parquet.
      const inTail = new Set([...this.tail.values()].map((s) => String(s.number)));
      const tailKey = this.tailKey();
      if (this.listing && this.listing.tail === tailKey && Date.now() - this.listing.at < RELIST_MS) {
        parquet = this.listing.files;
      } else {
        parquet = [];
        for (const p of datePartitions(logsDir)) {
          let names: string[];
          try { names = readdirSync(p.path); } catch { continue; } // removed by retention meanwhile
          for (const f of names) {
            if (!f.endsWith(".parquet")) continue;
            const made = /^seg(\d+)_/.exec(f);
            if (made && inTail.has(made[1]!)) continue;
            const path = join(p.path, f);
            if (await this.readable(path)) parquet.push(path);
          }
        }
        parquet.sort();
        // A listed file rewritten in place (same name, new size or time) is other data under the same view.
        const stamps = parquet.map((p) => this.checked.get(p)).join(",");
        if (stamps !== this.stamps) {
          this.generation++;
          this.settledEpoch++; // the files' rows changed under the same view: a partial of them too
        }
        this.stamps = stamps;
        this.listing = { files: parquet, at: Date.now(), tail: tailKey };
      }
      // A tail segment removed since the spool was read was compacted meanwhile, and a merge since may hold
      // its records in a file named after no segment: it leaves the view and the folder is listed again.
      // (One still there now was there at the listing: no merge could have taken its records yet.)
      gone = [...this.tail.keys()].filter((p) => !existsSync(p));
      listAgain = gone.length > 0;
    }
    const { tables, settledTables, growingTables, key } = this.viewOf(parquet);
    if (key === this.viewKey) return;
    // Every row of this log entered the cluster through this node: its node column is this node's id.
    const node = `${q(this.opts.nodeId ?? "local")} AS node`;
    const fromFiles = parquet.length
      ? `SELECT ts, stream, seq, origin, kind, data, date, ${node} FROM read_parquet([${parquet.map(q).join(", ")}], hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR})`
      : "";
    // One SELECT per table (not one over a union of them): DuckDB then reads only the columns a query
    // uses from each (a count by stream over 1.5M spooled rows: 46 ms, against 67 through the union).
    const spooled = tables
      .map((t) => spoolRows(t, node))
      .join(" UNION ALL ");
    // With its two parts, for aggregates pushed below the union (pushdown.ts); either may be empty. The
    // three are replaced in one transaction: a statement prepared meanwhile binds parts of one view (the
    // files of the new one beside the tables of the old showed a segment just compacted twice). On a
    // connection of its own: a statement that fails on the admin connection meanwhile (checkFiles reading
    // a bad file) would abort the transaction.
    const none = spoolRows("spool_tail", node);
    const settled = [fromFiles, ...settledTables.map((t) => spoolRows(t, node))].filter(Boolean).join(" UNION ALL ");
    const growing = growingTables.map((t) => spoolRows(t, node)).join(" UNION ALL ");
    const views = this.free.pop() ?? await this.db.connect();
    // Before DuckDB is asked: a statement that binds the new views finds the new epoch (see settledEpoch).
    this.settledEpoch++;
    try {
      await views.run("BEGIN TRANSACTION");
      await views.run(`CREATE OR REPLACE VIEW messages AS ${[fromFiles, spooled].filter(Boolean).join(" UNION ALL ")}`);
      await views.run(`CREATE OR REPLACE VIEW ${VIEW_PARTS[0]} AS ${fromFiles || `${none} LIMIT 0`}`);
      await views.run(`CREATE OR REPLACE VIEW ${VIEW_PARTS[1]} AS ${spooled || `${none} LIMIT 0`}`);
      await views.run(`CREATE OR REPLACE VIEW ${VIEW_PARTS[2]} AS ${settled || `${none} LIMIT 0`}`);
      await views.run(`CREATE OR REPLACE VIEW ${VIEW_PARTS[3]} AS ${growing || `${none} LIMIT 0`}`);
      await views.run("COMMIT");
    } catch (err) {
      views.closeSync(); // its transaction rolled back
      throw err;
    }
    this.giveBack(views);
    this.parted = true;
    this.viewKey = key;
    this.viewReplaced();
    this.generation++;
    const listed = new Set(parquet);
    for (const path of this.checked.keys()) if (!listed.has(path)) this.checked.delete(path);
  }

  /** The segments the spool's tail holds, and the change mark of the Parquet folder: the listing holds while they stay. */
  private tailKey(): string {
    const inTail = [...this.tail.values()].map((s) => String(s.number));
    return `${inTail.sort().join(",")} ${logChangeMark(this.opts.logsDir)}`;
  }

  /** What the view shows over Parquet files `parquet` and the tail as it is, and its key (viewKey). */
  private viewOf(parquet: string[]) {
    // Segments with no message yet (the one just opened holds only its marks) stay out of the view:
    // with nothing waiting for compaction, queries read the Parquet files alone, where DuckDB can
    // answer from the files' statistics (a count by stream) rather than through a union.
    const filledSegments = [...this.tail.values()].filter((t) => t.rows > 0);
    const filled = filledSegments.map((t) => t.table);
    const tables = filled.length || !parquet.length ? ["spool_tail", ...filled] : [];
    const settledTables = filledSegments.filter((t) => t.complete).map((t) => t.table);
    const growingTables = filledSegments.filter((t) => !t.complete).map((t) => t.table);
    const key = [...parquet, ...tables, `settled: ${settledTables.join(",")}`].join("\n");
    return { tables, settledTables, growingTables, key };
  }

  /**
   * True when a query reading only `streams` gets the same answer from the
   * view as it is as after a refresh: no refresh that may change the view
   * runs or waits, the spool holds the segments the view was made from (none
   * new, none gone, none to read again, none cut back), the Parquet listing
   * still holds, and no record of those streams waits unread. The unread
   * records (from where each table's rows are committed: a followTail may be
   * reading now) are looked at for their stream names alone. A follow that
   * appends meanwhile only adds rows; a record still arriving at the end is
   * not read by a refresh either. Synchronous: nothing changes while it looks.
   */
  private quietFor(streams: ReadonlySet<string>): boolean {
    if (this.opts.remote || !this.parted || this.viewKey === null || this.queued || (this.current && this.currentWithView)) return false;
    const listing = this.listing;
    if (!listing || Date.now() - listing.at >= RELIST_MS || listing.tail !== this.tailKey()) return false;
    if (this.viewOf(listing.files).key !== this.viewKey) return false;
    const { spoolDir } = this.opts;
    const files = existsSync(spoolDir) ? Spool.segments(spoolDir).map((f) => join(spoolDir, f)) : [];
    if (files.length !== this.tail.size || !files.every((f) => this.tail.has(f))) return false;
    const wanted = [...streams].map((s) => Buffer.from(s, "utf8"));
    const fields: RecordFields = { kind: 0, ts: 0, seq: 0, streamStart: 0, streamEnd: 0, originStart: 0, originEnd: 0, dataStart: 0, next: 0 };
    let budget = QUIET_PEEK_BYTES;
    for (const path of files) {
      const seg = this.tail.get(path)!;
      if (seg.reread) return false;
      const from = seg.visible ?? 0;
      let fd: number;
      try {
        fd = openSync(path, "r");
      } catch {
        return false;
      }
      try {
        const size = fstatSync(fd).size;
        if (size < Math.max(from, seg.offset) || !sameHeader(fd, seg)) return false;
        if (size === from) continue;
        if (seg.complete || seg.stuck || size - from > budget) return false;
        budget -= size - from;
        const buf = Buffer.allocUnsafe(size - from);
        const got = readAt(fd, buf, buf.length, from);
        for (let o = 0; o < got;) {
          const r = locateRecord(buf.subarray(0, got), o, fields);
          if (r === "incomplete") break; // the last record, still arriving: a refresh does not read it either
          if (r === "marks") {
            o += HEADER_BYTES + buf.readUInt32LE(o);
            continue;
          }
          if (r !== "message") return false; // damaged: for the refresh to deal with
          const length = fields.streamEnd - fields.streamStart;
          if (wanted.some((w) => w.length === length && buf.compare(w, 0, length, fields.streamStart, fields.streamEnd) === 0)) return false;
          o = fields.next;
        }
      } finally {
        closeSync(fd);
      }
    }
    return true;
  }

  /**
   * True when the query of `scope` may run over the view as it is (quietFor
   * its streams), counted in planStats; false when it reads other data too, or
   * its streams have records unread. `conn` parses its SQL the first time
   * (DuckDB's parser, remembered per text); one of the pool's when not given.
   */
  private async skipsRefresh(scope: QueryScope, conn?: DuckDBConnection): Promise<boolean> {
    if (this.closed || this.opts.remote || !mayHaveScope(scope.sql)) return false;
    let plan = this.scopes.get(scope.sql);
    if (plan === undefined) {
      const c = conn ?? this.free.pop() ?? await this.db.connect();
      try {
        plan = planStreamScope(await parseTree(c, scope.sql));
      } catch {
        plan = null; // not a statement the parser takes: it fails as it would, after a refresh
      } finally {
        if (!conn) this.giveBack(c);
      }
      if (this.scopes.size >= PUSHED_KEPT) this.scopes.delete(this.scopes.keys().next().value!);
      this.scopes.set(scope.sql, plan);
    }
    const streams = plan && scopeStreams(plan, scope.params);
    if (!streams || !this.quietFor(streams)) return false;
    this.planStats.refreshesSkipped++;
    return true;
  }

  /** Drops the tables of toDrop that no running query may have bound. */
  private async dropUnheld(): Promise<void> {
    const oldest = Math.min(...this.runningQueries); // Infinity when none runs
    for (const d of [...this.toDrop]) {
      if (d.after > oldest) continue;
      await this.admin.run(`DROP TABLE IF EXISTS ${d.table}`);
      this.toDrop.splice(this.toDrop.indexOf(d), 1);
    }
  }

  /**
   * The view over offloaded partitions in the remote cache (no spool, no local
   * Parquet): node, stream and date come from the keys' folders. An empty
   * cache gives an empty view of the same columns.
   */
  private async remoteView(): Promise<void> {
    const files = this.opts.remote!.files;
    const key = files.join("\n");
    if (key === this.viewKey) return;
    await this.admin.run(`CREATE OR REPLACE VIEW messages AS ${files.length
      ? `SELECT ts, stream, seq, origin, kind, data, date, node FROM read_parquet([${files.map(q).join(", ")}], hive_partitioning = true, hive_types = {'date': DATE, 'stream': VARCHAR, 'node': VARCHAR})`
      : spoolRows("spool_tail", "CAST(NULL AS VARCHAR) AS node")}`);
    this.parted = false;
    this.viewKey = key;
    this.viewReplaced();
  }

  /** True when `path` is a Parquet file DuckDB can read (checked once per size and mtime); an unreadable one is quarantined. */
  private async readable(path: string): Promise<boolean> {
    let stamp: string;
    try {
      const st = statSync(path);
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch {
      return false;
    }
    if (this.checked.get(path) === stamp) return true;
    const problem = await logFileProblem(this.admin, path);
    if (problem) {
      this.quarantine(path, problem);
      return false;
    }
    this.checked.set(path, stamp);
    return true;
  }

  private quarantine(path: string, reason: string): void {
    try {
      this.onQuarantine(quarantineFile(dirname(this.opts.logsDir), path, reason));
    } catch (err) {
      this.onQuarantine({ from: path, to: "", reason: `${reason}; moving it to quarantine failed: ${(err as Error).message}` });
    }
    this.checked.delete(path);
  }

  /**
   * After a query failed on a Parquet file its message names: reads that file
   * whole, and quarantines it when it cannot be read. True when it was.
   */
  private async checkFiles(message: string): Promise<boolean> {
    const named = this.namedParquet(message);
    // DuckDB does not always name the file (a scrambled page may read as "don't know what type"):
    // on an error that looks like unreadable data, every file in the view is read once.
    const suspects = named ? [named] : /^(Invalid Error|IO Error|Invalid Input Error|Serialization Error)|parquet|corrupt|magic bytes|thrift/i.test(message) ? [...this.checked.keys()] : [];
    let found = false;
    for (const path of suspects) {
      if (!existsSync(path)) continue;
      try {
        await this.admin.run(`SELECT max(ts), max(seq), max(origin), max(kind), max(length(data)) FROM read_parquet(${q(path)})`);
      } catch (err) {
        this.quarantine(path, `unreadable Parquet file: ${(err as Error).message.split("\n")[0]}`);
        this.viewKey = null;
        this.listing = null;
        found = true;
      }
    }
    return found;
  }

  /**
   * Runs one SELECT, returning at most `rowLimit` rows (more is an error that
   * says to add a LIMIT) within `timeoutMs` (the query is interrupted after).
   */
  async query(sql: string, opts: { rowLimit?: number; timeoutMs?: number; params?: (string | number | bigint)[]; onInterrupt?: (interrupt: () => void) => void } = {}): Promise<QueryResult> {
    const rowLimit = opts.rowLimit ?? 100_000;
    return this.withConnection(opts.timeoutMs ?? 30_000, opts.onInterrupt, { retryVanished: true, scope: { sql, params: opts.params } }, async (conn) => {
      const prepared = await this.prepare(conn, sql, opts.params);
      const read = async (statement: DuckDBPreparedStatement) => {
        let result = await this.begin(conn, statement);
        // Over a partial of another view than the one the run bound: run again without it.
        if (this.staleOver(statement)) result = await this.begin(conn, await this.pushedDown(conn, sql));
        const reader = new DuckDBResultReader(result);
        await reader.readUntil(rowLimit + 1);
        return reader;
      };
      let reader;
      try {
        reader = await read(prepared);
      } catch (err) {
        if (!this.rewrites.has(prepared) || interruptedBy(err) || err instanceof QueryError) throw err;
        // The rewrite failed as it ran (a cast out of range, say): the error is the original's to give, in
        // the SQL as the client wrote it, not the rewritten one's (messages_files, __a0).
        reader = await read(await prepareSelect(conn, sql));
      }
      if (reader.currentRowCount > rowLimit) throw new QueryError(`the result has more than ${rowLimit} rows; add a LIMIT or aggregate`);
      return { columns: reader.columnNames(), rows: reader.getRowObjectsJson() as Record<string, unknown>[], types: reader.columnTypes().map((t) => t.toString()) };
    });
  }

  /**
   * Runs one SELECT and hands its rows over chunk by chunk as DuckDB produces
   * them (for streamed answers); the next chunk is fetched only once `onChunk`'s
   * promise resolves (a slow reader pauses the query). Past `rowLimit` rows, or
   * `timeoutMs`, it stops with a QueryError (after the chunks already handed
   * over). Returns the rows sent. With `whole`, the caller keeps every row
   * until the end (nothing has gone out before): a run that fails because a
   * Parquet file it listed was removed meanwhile (merged, or by retention) runs
   * once more over a fresh view, and `onChunk` is called again from the
   * columns, with no rows, where the caller starts over. A streamed answer
   * cannot be retried, so it lists the Parquet folder afresh before it runs.
   * `onVersion` is told the data version (as dataVersion gives it) once the
   * view is refreshed, before each run starts. The time limit runs from
   * `startedAt` (default: now), for the run and its retry together.
   */
  async streamRows(
    sql: string,
    opts: { rowLimit: number; timeoutMs: number; startedAt?: number; params?: (string | number | bigint)[]; onInterrupt?: (interrupt: () => void) => void; whole?: boolean; onVersion?: (version: string) => void },
    onChunk: (columns: string[], rows: Record<string, unknown>[], types: string[]) => void | Promise<void>,
  ): Promise<number> {
    // A streamed answer is not retried: its first chunk (the columns) is already on its way to the client.
    return this.withConnection(opts.timeoutMs, opts.onInterrupt, { retryVanished: opts.whole === true, startedAt: opts.startedAt, scope: { sql, params: opts.params } }, async (conn) => {
      // The view is up to date now, and DuckDB has not started: the run reads at least the data of this
      // version (a follow may add rows before it starts, never take any away). See dataVersion.
      opts.onVersion?.(String(this.generation));
      const prepared = await this.prepare(conn, sql, opts.params);
      let rewritten = this.rewrites.has(prepared);
      /** The original's result in place of a rewrite that failed as it ran, before any row went out (as in query()). */
      const original = async (err: unknown) => {
        if (!rewritten || interruptedBy(err) || err instanceof QueryError) throw err;
        rewritten = false;
        return this.begin(conn, await prepareSelect(conn, sql));
      };
      let result = await this.begin(conn, prepared).catch(original);
      if (rewritten && this.staleOver(prepared)) {
        // Over a partial of another view than the one the run bound: run again without it (no row went out).
        const again = await this.pushedDown(conn, sql);
        rewritten = this.rewrites.has(again);
        result = await this.begin(conn, again).catch(original);
      }
      const columns = result.columnNames();
      const types = result.columnTypes().map((t) => t.toString());
      await onChunk(columns, [], types); // the columns are known now, even when no row follows
      let sent = 0;
      for (;;) {
        // The time limit may pass, or the client go, as the caller takes the last chunk.
        this.checkRun(conn);
        let chunk;
        try {
          chunk = await result.fetchChunk();
        } catch (err) {
          if (sent > 0) throw err;
          result = await original(err); // the same columns (pushedDown)
          continue;
        }
        if (!chunk || chunk.rowCount === 0) break;
        if (opts.whole && sent + chunk.rowCount > opts.rowLimit) throw new QueryError(`the result has more than ${opts.rowLimit} rows; add a LIMIT or aggregate`);
        const rows = chunk.convertRows(JsonDuckDBValueConverter).map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
        if (sent + rows.length > opts.rowLimit) {
          await onChunk(columns, rows.slice(0, opts.rowLimit - sent), types);
          throw new QueryError(`the result has more than ${opts.rowLimit} rows; it was cut there: add a LIMIT or aggregate`);
        }
        await onChunk(columns, rows, types);
        sent += rows.length;
      }
      return sent;
    });
  }

  /**
   * Writes the result of one SELECT to `path` (inside the engine's export folder)
   * as a zstd Parquet file; returns the rows written.
   */
  async exportParquet(sql: string, path: string, timeoutMs = 30_000, onInterrupt?: (interrupt: () => void) => void): Promise<number> {
    return this.withConnection(timeoutMs, onInterrupt, { retryVanished: true }, async (conn) => {
      // Checked to be one SELECT (the COPY below runs it as written: no rewrite, no partial to work out).
      (await prepareSelect(conn, sql)).destroySync();
      const body = sql.trim().replace(/;\s*$/, "");
      // Row groups of EXPORT_ROW_GROUP rows: DuckDB writes nothing of a row group until it is complete, so with
      // its default (122,880 rows) the export's size cap could not see a file grow, nor stop it, before its end.
      const pending = await conn.start(`COPY (${body}\n) TO ${q(path)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${EXPORT_ROW_GROUP})`);
      this.checkStarted(conn);
      const r = await pending.readAll();
      return Number(r.getRows()[0]?.[0] ?? 0);
    });
  }

  /**
   * Refreshes the view (unless the query of `scope` reads only streams with
   * nothing unread: skipsRefresh), then runs `fn` on a connection of its own,
   * interrupting DuckDB after `timeoutMs`; every failure becomes a QueryError.
   * With `retryVanished`, a run that failed because a Parquet file it listed
   * was removed meanwhile (a merge or retention replaced it) runs once more
   * over a fresh view.
   */
  private async withConnection<T>(timeoutMs: number, onInterrupt: ((interrupt: () => void) => void) | undefined, opts: { retryVanished: boolean; startedAt?: number; scope?: QueryScope }, fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    // One time limit for the run and its retry: a retry that had its own would go past the hub's
    // limit (time limit and grace), and the hub would kill the process.
    const limit = { ms: timeoutMs, deadline: (opts.startedAt ?? Date.now()) + timeoutMs };
    try {
      // A run that cannot be retried lists the Parquet folder afresh: a listed file a merge has
      // replaced would fail it half-way, after rows went out.
      return await this.runOnConnection(limit, onInterrupt, fn, !opts.retryVanished, opts.scope);
    } catch (err) {
      if (!opts.retryVanished || !(err instanceof QueryError) || !this.namesVanishedFile(err.message)) throw err;
      this.viewKey = null;
      // Listed afresh by a refresh that starts now: one going on may have reused the old listing.
      return this.runOnConnection(limit, onInterrupt, fn, true);
    }
  }

  /** The run each connection serves now: its time limit, and whether it was cancelled. */
  private readonly runs = new WeakMap<DuckDBConnection, { limit: RunLimit; cancelled: boolean }>();

  /**
   * Throws when the run on `conn` was cancelled or is past its time limit.
   * DuckDB forgets an interrupt that comes while none of its work runs (as a
   * statement is prepared, or between chunks): checked before each start and
   * each chunk.
   */
  private checkRun(conn: DuckDBConnection): void {
    const run = this.runs.get(conn);
    if (!run) return;
    if (run.cancelled) throw new QueryError("the query was cancelled");
    if (Date.now() >= run.limit.deadline) throw new QueryError(tookTooLong(run.limit.ms));
  }

  /** checkRun for a query DuckDB holds as started: one that is not to run is interrupted (else the connection's next query would wait for it to run to its end). */
  private checkStarted(conn: DuckDBConnection): void {
    try {
      this.checkRun(conn);
    } catch (err) {
      conn.interrupt();
      throw err;
    }
  }

  /**
   * Starts `prepared` on `conn` and gives its streamed result. DuckDB's query
   * exists before the run is checked (checkRun): from then on an interrupt
   * stops it, where one that came before (as it was prepared) would have been
   * forgotten and the query run to its end.
   */
  private begin(conn: DuckDBConnection, prepared: DuckDBPreparedStatement): Promise<DuckDBResult> {
    const pending = prepared.startStream();
    this.checkStarted(conn);
    return pending.getResult();
  }

  /** The log's Parquet file an error message names, if it names one. */
  private namedParquet(message: string): string | undefined {
    const logs = this.opts.logsDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(${logs}/[^"'\\s]+\\.parquet)`).exec(message)?.[1];
  }

  /** True when `message` names a Parquet file of the log that no longer exists. */
  private namesVanishedFile(message: string): boolean {
    const named = this.namedParquet(message);
    return named !== undefined && !existsSync(named);
  }

  private async runOnConnection<T>(limit: RunLimit, onInterrupt: ((interrupt: () => void) => void) | undefined, fn: (conn: DuckDBConnection) => Promise<T>, relist = false, scope?: QueryScope): Promise<T> {
    // Counted from before its refresh: the tables its view will name stay until it ends (toDrop).
    const letGo = this.holdTables();
    try {
      return await this.refreshAndRun(limit, onInterrupt, fn, relist, scope);
    } finally {
      letGo();
    }
  }

  private async refreshAndRun<T>(limit: RunLimit, onInterrupt: ((interrupt: () => void) => void) | undefined, fn: (conn: DuckDBConnection) => Promise<T>, relist: boolean, scope?: QueryScope): Promise<T> {
    const timeoutMs = limit.ms;
    // As a refresh would say (the connection is taken first now: it parses the SQL for its streams).
    if (this.closed) throw new QueryError("reading the log failed: the query engine is closed");
    const conn = this.free.pop() ?? await this.db.connect();
    try {
      // A run that must list the Parquet folder afresh refreshes whatever it reads.
      if (relist || !scope || !(await this.skipsRefresh(scope, conn))) {
        const since = Date.now();
        if (relist) this.listing = null;
        await this.refresh();
        // A refresh already going when this one asked may have reused the old listing.
        if (relist && (this.listing?.at ?? 0) < since) {
          this.listing = null;
          await this.refresh();
        }
      }
    } catch (err) {
      this.giveBack(conn);
      throw new QueryError(`reading the log failed: ${(err as Error).message}`);
    }
    const run = { limit, cancelled: false };
    this.runs.set(conn, run);
    let timedOut = false;
    // Only while this run holds the connection: a cancel that comes after (the answer on its way
    // out) must not interrupt the next query the pooled connection runs.
    let holding = true;
    onInterrupt?.(() => {
      if (!holding) return;
      run.cancelled = true;
      conn.interrupt();
    });
    const timer = setTimeout(() => { timedOut = true; conn.interrupt(); }, Math.max(0, limit.deadline - Date.now()));
    /** Why DuckDB was interrupted in this run, if it was. */
    const stopped = () => (timedOut ? new QueryError(tookTooLong(timeoutMs)) : run.cancelled ? new QueryError("the query was cancelled") : null);
    try {
      // Cancelled while the spool was read (the interrupt came as it was handed over), or its time gone
      // on a run before (a retry) or on waiting for an identical query.
      this.checkRun(conn);
      const out = await fn(conn);
      // DuckDB ends a streamed result it was interrupted in as if it were complete (fetchChunk gives no
      // chunk, and no error): an answer read to its end by a run that was stopped meanwhile is cut.
      const cut = stopped();
      if (cut) throw cut;
      return out;
    } catch (err) {
      if (err instanceof QueryError) throw err;
      const why = stopped();
      if (why) throw why;
      const message = (err as Error).message;
      if (await this.checkFiles(message).catch(() => false)) {
        throw new QueryError(`${message.split("\n")[0]}; that file is unreadable and was moved to quarantine: run the query again`);
      }
      throw new QueryError(message);
    } finally {
      holding = false;
      this.runs.delete(conn);
      clearTimeout(timer);
      this.giveBack(conn);
    }
  }

  /**
   * `sql` prepared on `conn` (checked to be one SELECT), with `params` bound.
   * SQL whose answer depends on the data alone (result-cache.ts: no now(), no
   * random(), no file read by name) keeps its statement on the connection and
   * runs it again the next time, skipping DuckDB's planning (about 3 ms of a
   * 10 ms query): a dashboard asks the same SQL over and over. Kept until the
   * view changes (forgetPlans: DuckDB would bind them again then anyway); a
   * time function would stay at the value it had when prepared, hence the rule.
   * The tail's tables grow under a kept plan: the optimizers that plan by the
   * data's statistics are off (open).
   */
  private async prepare(conn: DuckDBConnection, sql: string, params?: (string | number | bigint)[]): Promise<DuckDBPreparedStatement> {
    const keep = cacheable(sql);
    this.forgetPlans(conn);
    // Over a partial, the statement run reads the partial's table: kept by its own text.
    const over = keep && !params && this.parted ? await this.partialFor(conn, sql) : null;
    const text = over?.text ?? sql;
    let kept = keep ? this.plans.get(conn)?.byText : undefined;
    let prepared = kept?.get(text);
    /** True when the statement run reads the partial (one kept by the text over it does). */
    let overs = prepared !== undefined && over !== null;
    if (prepared) {
      this.planStats.reused++;
      kept!.delete(text); // most recently used last
      prepared.clearBindings();
    } else {
      const overPrepared = over ? await this.prepareOver(conn, sql, over.text) : null;
      overs = overPrepared !== null;
      prepared = overPrepared ?? (!params && this.parted && mayPushDown(sql) ? await this.pushedDown(conn, sql) : await prepareSelect(conn, sql));
      this.planStats.prepared++;
    }
    if (overs) {
      this.overPartial.set(prepared, over!.epoch);
      this.planStats.overPartials++;
    }
    if (keep) {
      if (!kept) this.plans.set(conn, { view: this.viewNumber, byText: (kept = new Map()) });
      kept.set(overs ? text : sql, prepared);
      if (kept.size > PLANS_PER_CONNECTION) {
        const [oldest, statement] = kept.entries().next().value!;
        kept.delete(oldest);
        statement.destroySync();
      }
    }
    if (params) prepared.bind(params.map((v) => (typeof v === "number" && Number.isInteger(v) ? BigInt(v) : v)));
    return prepared;
  }

  /**
   * `sql` prepared with its aggregates pushed below the view's union when it
   * has the shape for it (pushdown.ts), else as it is. The rewritten statement
   * is used only when it gives the columns the original gives, by name and
   * type; what was decided is kept per SQL text (parsing, writing back and the
   * check cost a few ms, once).
   */
  private async pushedDown(conn: DuckDBConnection, sql: string): Promise<DuckDBPreparedStatement> {
    const known = this.pushed.get(sql);
    if (known === null) return prepareSelect(conn, sql);
    if (known !== undefined) {
      let prepared: DuckDBPreparedStatement;
      try {
        prepared = await conn.prepare(known);
      } catch (err) {
        // Interrupted: the query stops (as below). Else a failure of the moment (a listed file merged away:
        // the original fails alike): the original this time, the rewrite still kept.
        if (interruptedBy(err)) throw err;
        return prepareSelect(conn, sql);
      }
      this.planStats.pushedDown++;
      this.rewrites.add(prepared);
      return prepared;
    }
    const original = await prepareSelect(conn, sql); // the checks and errors of any query first
    let rewritten: DuckDBPreparedStatement | null = null;
    let text: string | null = null;
    try {
      const plan = planPushdown(await parseTree(conn, sql), this.opaque);
      if (plan) {
        const names = Array.from({ length: original.columnCount }, (_, i) => original.columnName(i));
        const types = Array.from({ length: original.columnCount }, (_, i) => original.columnType(i).toString());
        const built = plan.build(names);
        if (!built) throw new Error("a name twice");
        const trees = plan.sums.length ? [built, plan.parts()] : [built];
        const written = await conn.runAndReadAll(`SELECT ${trees.map(() => "json_deserialize_sql(?::JSON)").join(", ")}`, trees.map((t) => JSON.stringify(t)));
        const [outer, union] = written.getRows()[0]!.map(String);
        if (union !== undefined) {
          // A sum of floating-point numbers added up part by part ends in other bits (pushdown.ts).
          const parts = await conn.prepare(union);
          let floating: boolean;
          try {
            floating = plan.sums.some((i) => ["FLOAT", "DOUBLE"].includes(parts.columnType(i).toString()));
          } finally {
            parts.destroySync();
          }
          if (floating) throw new Error("a floating-point sum");
        }
        text = outer!;
        const prepared = (rewritten = await conn.prepare(text));
        const same = prepared.columnCount === names.length && names.every((name, i) => prepared.columnName(i) === name && prepared.columnType(i).toString() === types[i]);
        if (!same) throw new Error("other columns");
        if (cacheable(sql)) {
          try {
            await this.planPartial(conn, sql, plan, names, types);
          } catch (err) {
            if (interruptedBy(err)) throw err;
            this.partialPlans.set(sql, null); // the rewrite stays good without one
          }
        }
      }
    } catch (err) {
      rewritten?.destroySync();
      // Interrupted (the time limit, a cancel): DuckDB forgets the interrupt once the statement it stopped
      // has failed, so the original run now would not be stopped. Nothing is remembered for this SQL.
      if (interruptedBy(err)) {
        original.destroySync();
        throw err;
      }
      // A shape DuckDB writes back differently: run as it is.
      rewritten = text = null;
    }
    if (this.pushed.size >= PUSHED_KEPT) this.pushed.delete(this.pushed.keys().next().value!);
    this.pushed.set(sql, text);
    if (!rewritten) return original;
    original.destroySync();
    this.planStats.pushedDown++;
    this.rewrites.add(rewritten);
    return rewritten;
  }

  /**
   * Works out and remembers the partial plan of `sql` (see partialPlans), whose
   * rewrite `plan` was just found good; a shape DuckDB writes back otherwise
   * gets none. Its columns are checked against the original's at its first run.
   */
  private async planPartial(conn: DuckDBConnection, sql: string, plan: Pushdown, names: string[], types: string[]): Promise<void> {
    let partial: { settled: string; over: string; columns: string[]; types: string[] } | null = null;
    const over = plan.buildOver(names, SETTLED_PLACEHOLDER);
    if (over) {
      const written = await conn.runAndReadAll("SELECT json_deserialize_sql(?::JSON), json_deserialize_sql(?::JSON)", [JSON.stringify(plan.settled()), JSON.stringify(over)]);
      const [settled, outer] = written.getRows()[0]!.map(String);
      if (outer!.split(SETTLED_PLACEHOLDER).length === 2) partial = { settled: settled!, over: outer!, columns: names, types };
    }
    if (this.partialPlans.size >= PUSHED_KEPT) this.partialPlans.delete(this.partialPlans.keys().next().value!);
    this.partialPlans.set(sql, partial);
  }

  /**
   * The statement text to run for `sql` over a partial, and the epoch of the
   * partial's rows; null when `sql` has no partial plan (none, or not known
   * yet: its first run works the plan out). A partial computed at an earlier
   * epoch (the view changed since) is computed again, on `conn`, within the
   * run's time limit; one computed while the view changed is not used.
   */
  private async partialFor(conn: DuckDBConnection, sql: string): Promise<{ text: string; epoch: number } | null> {
    const plan = this.partialPlans.get(sql);
    if (!plan) return null;
    let kept = this.partials.get(sql);
    if (kept && kept.epoch === this.settledEpoch) {
      this.partials.delete(sql); // most recently used last
      this.partials.set(sql, kept);
    } else {
      const epoch = this.settledEpoch;
      const table = `__partial_${++this.partialNumber}`;
      let rows: number;
      try {
        const pending = await conn.start(`CREATE TABLE ${table} AS ${plan.settled}`);
        this.checkStarted(conn);
        rows = Number((await pending.readAll()).getRows()[0]?.[0] ?? 0);
      } catch (err) {
        this.toDrop.push({ table, after: this.nextQuery });
        // Stopped (time limit, cancel), or a listed file gone (the run is tried again over a fresh view): as
        // for any run. Anything else: run as the rewrite does, whose failure gives the client's own error.
        if (interruptedBy(err) || err instanceof QueryError || this.namesVanishedFile((err as Error).message)) throw err;
        this.partialPlans.set(sql, null);
        return null;
      }
      this.planStats.partialsComputed++;
      if (rows > PARTIAL_ROWS) {
        // Too many groups to keep (the run reads the table as a whole anyway).
        this.toDrop.push({ table, after: this.nextQuery });
        this.partialPlans.set(sql, null);
        return null;
      }
      if (this.settledEpoch !== epoch) {
        // The view changed as it was computed: it may hold rows of either. Not kept; the next run computes it.
        this.toDrop.push({ table, after: this.nextQuery });
        this.planStats.partialsStale++;
        return null;
      }
      // The one kept now: maybe another run's, worked out meanwhile (not the one read before the await).
      const previous = this.partials.get(sql);
      if (previous) this.toDrop.push({ table: previous.table, after: this.nextQuery });
      this.partials.delete(sql);
      this.partials.set(sql, (kept = { table, epoch }));
      if (this.partials.size > PARTIALS_KEPT) {
        const [oldest, entry] = this.partials.entries().next().value!;
        this.partials.delete(oldest);
        this.toDrop.push({ table: entry.table, after: this.nextQuery });
      }
    }
    return { text: plan.over.replace(SETTLED_PLACEHOLDER, kept.table), epoch: kept.epoch };
  }

  /**
   * `text` (sql's rewrite over a partial) prepared, or null when its columns
   * are not the original's by name and type (the partial plan is then
   * dropped) or it cannot be prepared now.
   */
  private async prepareOver(conn: DuckDBConnection, sql: string, text: string): Promise<DuckDBPreparedStatement | null> {
    const plan = this.partialPlans.get(sql)!;
    let prepared: DuckDBPreparedStatement;
    try {
      prepared = await conn.prepare(text);
    } catch (err) {
      if (interruptedBy(err)) throw err;
      return null;
    }
    const same = prepared.columnCount === plan.columns.length && plan.columns.every((name, i) => prepared.columnName(i) === name && prepared.columnType(i).toString() === plan.types[i]);
    if (!same) {
      prepared.destroySync();
      this.partialPlans.set(sql, null);
      return null;
    }
    this.rewrites.add(prepared);
    return prepared;
  }

  /**
   * True when `prepared` reads a partial computed at another epoch than the
   * view its run bound (checked once DuckDB has started the run): the run is
   * to be made again without it. Rare: the view changed between the partial
   * and the run.
   */
  private staleOver(prepared: DuckDBPreparedStatement): boolean {
    const epoch = this.overPartial.get(prepared);
    if (epoch === undefined || epoch === this.settledEpoch) return false;
    this.planStats.partialsStale++;
    return true;
  }

  /**
   * Destroys `conn`'s kept statements when they were prepared over an earlier
   * view. A kept statement holds the first Parquet file of the view it was
   * bound over open (DuckDB's reader): once that file is merged away or
   * removed by retention, its disk space would stay taken for as long as the
   * statement is kept and not run again. DuckDB would bind it anew at its next
   * run anyway, which costs what preparing it again does.
   */
  private forgetPlans(conn: DuckDBConnection): void {
    const kept = this.plans.get(conn);
    if (!kept || kept.view === this.viewNumber) return;
    this.plans.delete(conn);
    for (const statement of kept.byText.values()) statement.destroySync();
  }

  /** The view changed: the idle connections let go of their statements now, the others when they are given back. */
  private viewReplaced(): void {
    this.viewNumber++;
    for (const c of this.free) this.forgetPlans(c);
  }

  /** A connection a query or compaction is done with goes back to the pool (closed when the engine is). */
  private giveBack(conn: DuckDBConnection): void {
    if (this.closed) return conn.closeSync();
    this.forgetPlans(conn);
    this.free.push(conn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.free.splice(0)) c.closeSync();
    this.admin.closeSync();
    this.db.closeSync();
  }
}

/** A run's time limit: as told in its error (ms), and when it ends (ms since the epoch). */
interface RunLimit {
  ms: number;
  deadline: number;
}

/** The attached in-memory database the spool tail's tables live in (compressed: see open). */
const TAIL_DB = "tails";

/** The table of spool segment `n`, or of its `reread`th read anew. */
function tailTable(n: number, reread = 0): string {
  return `${TAIL_DB}.tail_${n}${reread ? `_${reread}` : ""}`;
}

/** The rows of spool table `table` with the view's columns, `node` the SQL of the last one. */
function spoolRows(table: string, node: string): string {
  return `SELECT make_timestamp(ts_us) AS ts, stream, seq, origin, kind, data, CAST(make_timestamp(ts_us) AS DATE) AS date, ${node} FROM ${table}`;
}

/** True when `err` is DuckDB's for a statement it stopped (Connection.interrupt). */
function interruptedBy(err: unknown): boolean {
  return /^INTERRUPT Error/.test((err as Error)?.message ?? "");
}

/**
 * Checks that `sql` is exactly one SELECT (by DuckDB's own parser) and prepares
 * it. DuckDB refuses to prepare more than one statement (it parses them all and
 * runs none), so one prepare both counts and plans: extracting the statements
 * first cost about 5 ms more per query.
 */
async function prepareSelect(conn: DuckDBConnection, sql: string) {
  let prepared;
  try {
    prepared = await conn.prepare(sql);
  } catch (err) {
    const message = (err as Error).message;
    if (/Cannot prepare multiple statements/.test(message)) throw new QueryError("send exactly one statement (got more than one); allowed: a single SELECT over the view messages");
    if (/No statement to prepare/.test(message)) throw new QueryError("send exactly one statement (got none); allowed: a single SELECT over the view messages");
    throw new QueryError(message);
  }
  if (prepared.statementType !== StatementType.SELECT) {
    throw new QueryError(`only SELECT queries run here (this is a ${StatementType[prepared.statementType] ?? "other"} statement); the log is read-only`);
  }
  return prepared;
}

/** The formats whose answer is its rows' texts joined (formatRow, joinRows): all but the aligned table. */
export type RowFormat = "csv" | "json" | "ndjson" | "grid";

const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
const csvField = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** One row of a result as `format` writes it, without the separator between rows (joinRows puts it). */
export function formatRow(columns: string[], row: Record<string, unknown>, format: RowFormat): string {
  if (format === "json" || format === "ndjson") return JSON.stringify(row);
  if (format === "grid") return JSON.stringify(columns.map((c) => row[c] ?? null));
  return columns.map((c) => csvField(cell(row[c]))).join(",");
}

/** What goes between two rows' texts in each format. */
export const ROW_SEPARATOR: Record<RowFormat, string> = { json: ",", grid: ",", ndjson: "\n", csv: "\n" };

/**
 * A whole answer from its rows' texts (formatRow), or from runs of them
 * already joined by ROW_SEPARATOR (none empty): what formatResult gives for
 * the same rows.
 */
export function joinRows(columns: string[], types: string[], rows: string[], format: RowFormat): string {
  const body = rows.join(ROW_SEPARATOR[format]);
  if (format === "json") return `[${body}]\n`;
  if (format === "ndjson") return rows.length ? `${body}\n` : "";
  if (format === "grid") return `{"columns":${JSON.stringify(columns)},"types":${JSON.stringify(types)},"rows":[${body}]}`;
  return `${rows.length ? `${columns.map(csvField).join(",")}\n${body}` : columns.map(csvField).join(",")}\n`;
}

/** Each column's width in an aligned table of `r`: its widest cell, or its name. */
export const columnWidths = (r: QueryResult) => r.columns.map((c) => r.rows.reduce((w, row) => Math.max(w, cell(row[c]).length), c.length));

/** The characters of `r` as an aligned table of column widths `widths`, worked out before it is made: every row is padded to them. */
export function tableChars(r: QueryResult, widths = columnWidths(r)): number {
  return (widths.reduce((a, w) => a + w, 0) + 2 * widths.length) * (r.rows.length + 2) + 24;
}

/** Renders a result as an aligned text table (of column widths `widths`, when known), CSV, a JSON array, NDJSON or the admin UI's grid. */
export function formatResult(r: QueryResult, format: RowFormat | "table", known?: number[]): string {
  if (format !== "table") return joinRows(r.columns, r.types ?? [], r.rows.map((row) => formatRow(r.columns, row, format)), format);
  const widths = known ?? columnWidths(r);
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(r.columns), line(widths.map((w) => "-".repeat(w))), ...r.rows.map((row) => line(r.columns.map((c) => cell(row[c])))), `(${r.rows.length} row${r.rows.length === 1 ? "" : "s"})`].join("\n") + "\n";
}
