/**
 * The query process (`switchyard __query-engine`, started by the hub's query
 * pool): keeps one sandboxed DuckDB open and warm and answers queries framed on
 * stdin (see protocol.ts) on stdout. Several queries run at once, each on a
 * connection of its own. Streamed answers go out one chunk at a time, each only
 * after the hub asked for it, so a slow reader pauses the query. Between
 * queries it reads the spool's new records (paced by the rate they come at); it also runs log
 * compaction when the hub sends it a job (see compact-process.ts). It exits
 * when stdin closes (the hub stopped it, or died).
 */
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { mayGoIdle, setProcessIdle } from "../core/cpu-yield.ts";
import { processAlive } from "../core/self-process.ts";
import type { QueryEngine as Engine } from "./engine.ts";
import { encodeFrame, readFrames } from "./frames.ts";
import { tookTooLong, type FromEngine, type ToEngine } from "./protocol.ts";
import { cacheable, ResultCache } from "./result-cache.ts";

/**
 * How the spool's new records are read between queries. A query first reads
 * what came since the last read (1.5–4 µs a record), and a read costs about
 * 1 ms beyond its records (DuckDB's commit of them). So each read aims at about
 * TAIL_FOLLOW_RECORDS records, the wait set by the rate they came at: 20 ms
 * from 100,000 msg/s up (a query arriving just before the next read finds some
 * 2,000 records to read first, about 5 ms), up to 1 s at 2,000 msg/s and below (a
 * process kept up by a dashboard costs little at low rates). With nothing new
 * the wait doubles up to 2 s (a read then costs a folder listing and a stat
 * per segment, and the wake-up itself: 0.3% of a core at 2 a second).
 */
const TAIL_FOLLOW_RECORDS = 2_000;
const TAIL_FOLLOW_MIN_MS = 20;
const TAIL_FOLLOW_MAX_MS = 1_000;
const TAIL_FOLLOW_IDLE_MS = 2_000;

/**
 * The wait before the next read of the spool's tail, after one that came
 * `elapsedMs` after the last: `arrived` records were read meanwhile by any
 * refresh (a query's too: while queries come back to back they read most
 * records, and a pace set by the follow's own `read` alone backed off to the
 * maximum, leaving each query a whole second of records to read first),
 * `read` by this follow (null: skipped, a refresh was going on).
 */
export function nextFollowWait(wait: number, elapsedMs: number, arrived: number, read: number | null): number {
  if (arrived > 0) return Math.min(TAIL_FOLLOW_MAX_MS, Math.max(TAIL_FOLLOW_MIN_MS, (TAIL_FOLLOW_RECORDS * elapsedMs) / arrived));
  if (read === 0) return Math.min(TAIL_FOLLOW_IDLE_MS, wait * 2);
  return wait;
}

/**
 * A query still running after `query_yield_ms` (250 by default) is a long one
 * (dashboards', Grafana's and the admin page's queries take 5–150 ms on a
 * small box). While one runs, the whole process runs at SCHED_IDLE: it gets
 * the CPU the hub and everything else leave, and the hub's fan-out keeps its
 * rate on a small box where a long scan took a quarter of it at nice 10. On an
 * idle box that is all the CPU, so nothing slows. Not while a compaction runs
 * (the spool must keep shrinking however busy the box is), nor while a query
 * younger than `query_yield_ms` runs (a dashboard's query does not wait behind
 * a long scan's class), nor for a query past a quarter of its time limit (it
 * keeps three quarters of it at nice 10).
 */
export class LongQueryYield {
  private young = 0;
  private long = 0;
  private pressed = 0;
  private compacting = 0;
  idle = false;
  /** `afterMs` 0: never. */
  constructor(private readonly apply: (idle: boolean) => void, private readonly afterMs: number) {}

  /** A query with a time limit of `timeoutMs` started; call what it returns when it ends. */
  query(timeoutMs = Infinity): () => void {
    if (this.afterMs <= 0) return () => {};
    let state: "young" | "long" | "pressed" | "ended" = "young";
    this.young++;
    this.update();
    const long = setTimeout(() => {
      this.young--;
      state = "long";
      this.long++;
      this.update();
    }, this.afterMs);
    const pressed = Number.isFinite(timeoutMs) ? setTimeout(() => {
      if (state === "young") this.young--; // not by the order timers keep, but whatever their order
      if (state === "long") this.long--;
      state = "pressed";
      this.pressed++;
      this.update();
    }, Math.max(this.afterMs, timeoutMs / 4)) : undefined;
    return () => {
      clearTimeout(long);
      clearTimeout(pressed);
      if (state === "young") this.young--;
      if (state === "long") this.long--;
      if (state === "pressed") this.pressed--;
      state = "ended";
      this.update();
    };
  }

  /** A compaction started; call what it returns when it ends. */
  compaction(): () => void {
    this.compacting++;
    this.update();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.compacting--;
      this.update();
    };
  }

  private update(): void {
    const want = this.long > 0 && this.young === 0 && this.pressed === 0 && this.compacting === 0;
    if (want === this.idle) return;
    this.idle = want;
    this.apply(want);
  }
}

/** A whole answer being computed, as an identical query may wait for it (see `running` in runQueryProcess). */
interface RunningAnswer {
  /** The hub's id of the query running it. */
  id: number;
  /** The data version its run reads (at least), once its refresh is done ("": it failed before). */
  version: Promise<string>;
  /** The time its run has (its time limit, or what was left of it after waiting for a twin), and when that runs out (ms since the epoch). */
  budgetMs: number;
  deadline: number;
  /** Its answer; null when it was cancelled (its client went away). */
  answer: Promise<{ body: string; rows: number } | null>;
}

/** Text gathered before a streamed chunk goes out. */
const CHUNK_BYTES = 64 * 1024;

/** Sends `frame` to the hub, followed by `body` as its raw bytes (frames.ts) when given. */
function send(frame: FromEngine, body?: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(encodeFrame(frame, body), (err) => (err ? reject(err) : resolve()));
  });
}

const mb = (bytes: number) => `${Math.round(bytes / 1048576)} MB`;

/** The start of a Parquet export's file name, followed by the pid of the query process writing it. */
const EXPORT_PREFIX = "export-";

/**
 * Removes the Parquet exports that query processes no longer running left in
 * `dir` (a process killed mid-export, for its time limit or its memory, never
 * removes its file); those of live processes (several may run) stay.
 */
function sweepExports(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(EXPORT_PREFIX)) continue;
    // export-<pid>-<query id>-<uuid>.parquet. Any other export- file is of the naming before this one
    // (export-<query id>-<uuid>, no pid), left by a process of the version before, gone.
    const pid = Number(/^export-(\d+)-\d+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.parquet$/.exec(name)?.[1] ?? NaN);
    if (Number.isNaN(pid) || !processAlive(pid)) rmSync(join(dir, name), { force: true });
  }
}

/** Runs the query process until stdin closes; returns the exit code. */
export async function runQueryProcess(): Promise<number> {
  // DuckDB loads here: when it cannot (no usable folder for its library, say), the hub hears why.
  let mod: typeof import("./engine.ts");
  try {
    mod = await import("./engine.ts");
  } catch (err) {
    await send({ type: "fatal", error: (err as Error).message });
    return 3;
  }
  const { columnWidths, formatResult, formatRow, joinRows, QueryEngine, QueryError, ROW_SEPARATOR, tableChars } = mod;
  let engine: Engine | null = null;
  let opening: Promise<void> | null = null;
  let resultBytes = 32 * 1024 * 1024;
  let cache = new ResultCache(0);
  /** Credits for streamed queries: how many chunks the hub has asked for, and who waits for one. */
  const credits = new Map<number, { count: number; wake: (() => void) | null; cancelled: boolean }>();
  /** Queries sent and not yet ended: their interrupt once DuckDB runs them, and whether a cancel came. */
  const inFlight = new Map<number, { interrupt: (() => void) | null; cancelled: boolean }>();
  /**
   * Whole answers being computed now, by what decides them (SQL, parameters,
   * format, row limit), with the data version they read and their time limit:
   * an identical query that finds the same version would read the same data,
   * so it waits for that answer rather than run beside it (8 viewers of one
   * dashboard cost one run, not two at once, each slowed by the other). Its
   * promise gives null when that query was cancelled (its client went away).
   */
  const running = new Map<string, RunningAnswer>();
  /** Keeps query `id`'s interrupt for a cancel; one that came before (the spool still being read) interrupts at once. */
  const interruptOf = (id: number) => (f: () => void) => {
    const q = inFlight.get(id);
    if (!q) return;
    q.interrupt = f;
    if (q.cancelled) f();
  };
  // Asked at each move, not once at start: the hub lowers this process's priority (nice 10) a moment
  // after starting it, and the right to come back from SCHED_IDLE depends on it. A move the kernel
  // refused after all ends yielding in this process, said once on stderr (the hub's log).
  let yieldRefused = false;
  const moveTo = (idle: boolean) => {
    if (idle && (yieldRefused || !mayGoIdle())) return;
    if (setProcessIdle(idle)) return;
    if (idle) setProcessIdle(false);
    if (!yieldRefused) console.error(`query process: the kernel refused a move ${idle ? "to" : "back from"} SCHED_IDLE; long queries no longer yield the CPU in this process (set query_yield_ms to 0 where this recurs)`);
    yieldRefused = true;
  };
  let yielding = new LongQueryYield(moveTo, 0); // until "open" says when

  const waitCredit = async (id: number, deadline: number, timeoutMs: number) => {
    const c = credits.get(id)!;
    while (c.count === 0 && !c.cancelled) {
      const left = deadline - Date.now();
      if (left <= 0) throw new QueryError(`${tookTooLong(timeoutMs)} (its reader was too slow)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        c.wake = () => { clearTimeout(t); resolve(); };
      });
      c.wake = null;
    }
    if (c.cancelled) throw new QueryError("the query was cancelled");
    c.count--;
  };

  const runStream = async (job: Extract<ToEngine, { type: "query" }>) => {
    const deadline = Date.now() + job.timeoutMs;
    const csv = job.format === "csv";
    let pending = "";
    let total = 0;
    let header = true;
    const flush = async () => {
      if (!pending) return;
      const text = pending;
      pending = "";
      await send({ type: "chunk", id: job.id, text });
      await waitCredit(job.id, deadline, job.timeoutMs);
    };
    try {
      const rows = await engine!.streamRows(job.sql, { rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params, onInterrupt: interruptOf(job.id) }, async (columns, rows) => {
        if (header) {
          header = false;
          await send({ type: "start", id: job.id });
          if (csv) pending += joinRows(columns, [], [], "csv");
        }
        for (const row of rows) {
          const text = `${formatRow(columns, row, csv ? "csv" : "ndjson")}\n`;
          total += Buffer.byteLength(text, "utf8");
          if (total > resultBytes) throw new QueryError(`the result is larger than ${mb(resultBytes)} (query_result_mb); it was cut there: select fewer or smaller columns, or add a LIMIT`);
          pending += text;
          if (pending.length >= CHUNK_BYTES) await flush();
        }
      });
      await flush();
      await send({ type: "end", id: job.id, rows });
    } catch (err) {
      if (pending) await send({ type: "chunk", id: job.id, text: pending });
      throw err;
    }
  };

  const runOne = async (job: Extract<ToEngine, { type: "query" }>) => {
    const onInterrupt = interruptOf(job.id);
    const riding = job.rideOn !== undefined;
    if (riding && job.format === "parquet") return send({ type: "unshared", id: job.id });
    if (job.format === "parquet") {
      // Named after this process: one killed mid-export leaves its file, which the next process removes (sweepExports).
      const path = join(engine!.exportDir, `${EXPORT_PREFIX}${process.pid}-${job.id}-${crypto.randomUUID()}.parquet`);
      const tooLarge = () => new QueryError(`the Parquet file is larger than ${mb(resultBytes)} (query_result_mb): select fewer rows or columns`);
      // The file is watched as DuckDB writes it, and the export stopped once it passes the cap (not written whole first).
      let interrupt: (() => void) | null = null;
      let over = false;
      const watch = setInterval(() => {
        try {
          if (statSync(path).size > resultBytes && !over) {
            over = true;
            interrupt?.();
          }
        } catch { /* not there yet */ }
      }, 100);
      try {
        const rows = await engine!.exportParquet(job.sql, path, job.timeoutMs, (f) => {
          interrupt = f;
          onInterrupt(f);
        }).catch((err) => {
          throw over ? tooLarge() : err;
        });
        if (over || statSync(path).size > resultBytes) throw tooLarge();
        const bytes = readFileSync(path);
        await send({ type: "result", id: job.id, rows }, bytes);
      } finally {
        clearInterval(watch);
        rmSync(path, { force: true });
      }
      return;
    }
    // The same SQL over the same data: the answer kept from the last time, if it was kept, or the
    // answer of an identical query running now over that data (shared whether or not answers are kept).
    // Without either to look at, the run's own refresh gives the version (one read of the spool, not two).
    const key = cacheable(job.sql) ? JSON.stringify([job.sql, job.params ?? [], job.format, job.rowLimit]) : null;
    let startedAt = Date.now(); // when its time limit starts: the engine's, unless it waited for a twin
    let waited = false;
    if (key && (riding || cache.maxBytes > 0 || running.has(key))) {
      const version = await engine!.dataVersion({ sql: job.sql, params: job.params });
      // Not for a rider: each would take a copy of the kept answer (up to query_queue of them at once).
      const hit = riding ? null : cache.get(key, version);
      if (hit) {
        await send({ type: "result", id: job.id, rows: hit.rows, cached: true }, hit.body);
        return;
      }
      const twin = running.get(key);
      // Only a twin that has at least this query's time and ends no later: one that runs out of time
      // would have run this one out of time too, and the wait never outlasts this query's own limit
      // (the hub's, which kills the process past it).
      // A rider only on the run the hub holds the answer of: it is sent that answer's name, not a copy.
      if (twin && twin.budgetMs >= job.timeoutMs && twin.deadline <= Date.now() + job.timeoutMs && (!riding || twin.id === job.rideOn)) {
        const joined = Date.now();
        const shared = await joinTwin(job.id, twin, version);
        if (typeof shared === "object") {
          if (riding) await send({ type: "result", id: job.id, rows: shared.rows, shared: true, answerOf: twin.id });
          else await send({ type: "result", id: job.id, rows: shared.rows, shared: true }, shared.body);
          return;
        }
        if (shared === "cancelled") {
          // The twin's client went away and its run was stopped: this one runs itself, in the time it
          // has left (and has less than its limit: a query that would need all of it joins no later one).
          startedAt = joined;
          waited = true;
        }
        // Another version: it runs itself as any query does (its twin's refresh was all it waited for).
      }
    }
    // A query riding without a slot (run-query.ts) never runs here: the hub queues it for a slot.
    if (riding) return send({ type: "unshared", id: job.id });
    let version: string | null = null;
    let known!: (version: string) => void;
    const versionKnown = new Promise<string>((resolve) => { known = resolve; });
    // Told once the run's refresh is done, before DuckDB runs it: the run reads at least that data.
    const onVersion = (v: string) => {
      version ??= v; // a run again over a fresh view (a listed file was gone) reads newer data still
      known(version);
    };
    const run = answer(job, onInterrupt, startedAt, onVersion);
    // Known to identical queries from now on, before its version is (they wait for it, then compare).
    const mine: RunningAnswer = {
      id: job.id,
      version: versionKnown,
      budgetMs: startedAt + job.timeoutMs - (waited ? Date.now() : startedAt),
      deadline: startedAt + job.timeoutMs,
      answer: run.then((a) => a, (err) => inFlight.get(job.id)?.cancelled ? null : Promise.reject(err)),
    };
    mine.answer.catch(() => {});
    // The newest run of this SQL: the one a query coming now is likeliest to find at its version.
    if (key) running.set(key, mine);
    try {
      const { body, rows } = await run;
      if (key && version) cache.set(key, version, body, rows);
      await send({ type: "result", id: job.id, rows }, body);
    } finally {
      known(""); // failed before its refresh ended: no version to share
      if (key && running.get(key) === mine) running.delete(key);
    }
  };

  /**
   * The answer of identical query `twin` when its run reads data version
   * `version`, else why this one must run itself: its run reads another
   * version, or it was cancelled. Throws at once when this one is cancelled
   * meanwhile.
   */
  const joinTwin = (id: number, twin: RunningAnswer, version: string) =>
    new Promise<{ body: string; rows: number } | "another version" | "cancelled">((resolve, reject) => {
      interruptOf(id)(() => reject(new QueryError("the query was cancelled")));
      twin.version.then((v) => (v === version ? twin.answer.then((a) => resolve(a ?? "cancelled"), reject) : resolve("another version")), reject);
    });

  /**
   * The whole formatted answer of a query, within its time limit counted from
   * `startedAt`. Rows are formatted as they come, a chunk's rows joined into
   * one text, and only the text is kept, counted against query_result_mb (a
   * huge result stops at the cap rather than filling memory). Gathered as JS
   * objects, a row takes about five times its text: 100,000 rows of the log,
   * a 19 MB JSON answer, took this process to 424 MB. The aligned table, which
   * needs every row for its widths, keeps the rows, counts their values, and
   * is measured again, padded, before it is made.
   */
  const answer = async (job: Extract<ToEngine, { type: "query" }>, onInterrupt: (f: () => void) => void, startedAt: number, onVersion: (version: string) => void) => {
    const format = job.format as Exclude<typeof job.format, "parquet">;
    let texts: string[] = [];
    let table: Record<string, unknown>[] = [];
    let cols: string[] = [];
    let types: string[] = [];
    let total = 0;
    let count = 0;
    const tooLarge = () => new QueryError(`the result is larger than ${mb(resultBytes)} (query_result_mb): select fewer or smaller columns, or add a LIMIT`);
    await engine!.streamRows(job.sql, { rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, startedAt, params: job.params, onInterrupt, onVersion, whole: true }, (columns, rows, t) => {
      cols = columns;
      types = t;
      if (rows.length === 0) {
        // The columns, at the start of a run (the first, or one again over a fresh view: see streamRows).
        texts = [];
        table = [];
        total = 0;
        count = 0;
        return;
      }
      count += rows.length;
      if (format === "table") {
        for (const row of rows) {
          for (const v of Object.values(row)) total += (typeof v === "string" ? v.length : v !== null && typeof v === "object" ? JSON.stringify(v).length : 16) + 2;
          if (total > resultBytes) throw tooLarge();
          table.push(row);
        }
        return;
      }
      const lines: string[] = [];
      for (const row of rows) {
        const text = formatRow(columns, row, format);
        total += Buffer.byteLength(text, "utf8") + 1;
        if (total > resultBytes) throw tooLarge();
        lines.push(text);
      }
      texts.push(lines.join(ROW_SEPARATOR[format]));
    });
    if (format !== "table") return { body: joinRows(cols, types, texts, format), rows: count };
    // Every row of a table is padded to the widest cell of each column: its size is known only now.
    const whole = { columns: cols, rows: table, types };
    const widths = columnWidths(whole);
    if (tableChars(whole, widths) > resultBytes) throw tooLarge();
    const body = formatResult(whole, "table", widths);
    if (Buffer.byteLength(body, "utf8") > resultBytes) throw tooLarge();
    return { body, rows: count };
  };

  const handle = async (job: Extract<ToEngine, { type: "query" }>) => {
    // A rider runs nothing: it does not keep a long run's process from yielding.
    const ended = job.rideOn !== undefined ? () => {} : yielding.query(job.timeoutMs);
    try {
      await opening;
      if (inFlight.get(job.id)?.cancelled) throw new QueryError("the query was cancelled");
      if (job.stream) {
        await runStream(job);
      } else {
        await runOne(job);
      }
    } catch (err) {
      await send({ type: "error", id: job.id, error: (err as Error).message, refused: err instanceof QueryError });
    } finally {
      ended();
      credits.delete(job.id);
      inFlight.delete(job.id);
    }
  };

  await readFrames(Bun.stdin.stream(), (frame) => {
    const m = frame as ToEngine;
    if (m.type === "open") {
      resultBytes = m.resultBytes;
      cache = new ResultCache(m.cacheBytes);
      yielding = new LongQueryYield(moveTo, m.yieldMs);
      opening = QueryEngine.open({ ...m.dirs, exportDir: join(m.dirs.tempDir, "..", "export") }, (q) => void send({ type: "quarantined", ...q }))
        .then(async (e) => {
          engine = e;
          sweepExports(e.exportDir);
          await send({ type: "ready" });
          // Between queries, keep reading what the spool gains, so that a query during heavy ingest
          // pays only for the last moment's messages rather than everything since the query before.
          let wait = TAIL_FOLLOW_MAX_MS;
          let last = performance.now();
          let lastRead = e.tailRecordsRead;
          const follow = async () => {
            const read = await e.followTail().catch(() => 0); // the next query's refresh reports it
            const now = performance.now();
            wait = nextFollowWait(wait, now - last, e.tailRecordsRead - lastRead, read);
            last = now;
            lastRead = e.tailRecordsRead;
            setTimeout(follow, wait).unref();
          };
          setTimeout(follow, wait).unref();
        });
      opening.catch(async (err) => {
        await send({ type: "fatal", error: `cannot open DuckDB: ${(err as Error).message}` });
        process.exit(3);
      });
    } else if (m.type === "query") {
      // Set up before anything else is read: the hub's first "more" may come in the same read.
      if (m.stream) credits.set(m.id, { count: 0, wake: null, cancelled: false });
      inFlight.set(m.id, { interrupt: null, cancelled: false });
      void handle(m);
    } else if (m.type === "more") {
      const c = credits.get(m.id);
      if (c) { c.count++; c.wake?.(); }
    } else if (m.type === "compact") {
      // Compaction opens a DuckDB of its own (its own memory limit) in this process, so the box runs one
      // DuckDB process rather than two; its JS work yields between batches, and queries go on meanwhile.
      void (async () => {
        const ended = yielding.compaction();
        try {
          const { runCompactJob } = await import("../log/compact-process.ts");
          // The segments the engine holds in its tail are written from there, not read again.
          const outcome = await runCompactJob(m.job, engine ? (segment) => engine!.loadedSegment(segment) : undefined);
          // A segment read from its file left its buffer and decoded messages: gone before queries go on.
          if (!outcome.ok || outcome.result.readFromFile > 0) Bun.gc(true);
          await send({ type: "compacted", id: m.id, outcome });
        } finally {
          ended();
        }
      })();
    } else if (m.type === "cancel") {
      const q = inFlight.get(m.id);
      if (q) {
        q.cancelled = true;
        q.interrupt?.();
      }
      const c = credits.get(m.id);
      if (c) { c.cancelled = true; c.wake?.(); }
    }
  });
  (engine as Engine | null)?.close();
  return 0;
}
