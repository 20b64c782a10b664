import type { QueryEngineOptions } from "./engine.ts";
import { durationText, tookTooLong, type QueryFormat } from "./protocol.ts";
import { CLIENT_GONE, DEFAULT_POOL_LIMITS, QueryPool, type QueryPoolLimits, type QueryProcess, type Slot } from "./query-pool.ts";
import { cacheable } from "./result-cache.ts";
import type { Quarantined } from "../log/quarantine.ts";

/** One query for the query process. */
export interface QueryJob {
  sql: string;
  /** grid: JSON {columns, types, rows: [[…]]} for the admin UI's table and chart. */
  format: QueryFormat;
  rowLimit: number;
  timeoutMs: number;
  /** Values for `$1`, `$2`, … in `sql` (never pasted into the SQL text). */
  params?: (string | number)[];
  dirs: QueryEngineOptions & { limits?: QueryPoolLimits };
  /** Who asks (e.g. the client's address): one client may hold `perClient` slots at most. */
  client?: string;
  /**
   * The request's signal: when it aborts (the client went away), the query is
   * cancelled, waiting or running, and its slot freed. A run shared by
   * identical queries waiting together is cancelled only once every one of
   * them went away; queries riding on a run (ride) do not keep it going, and
   * are queued again when it is cancelled.
   */
  signal?: AbortSignal;
}

/** The reply to a query whose client went away. */
const GONE: { ok: false; error: string; refused: boolean; status: number } = { ok: false, error: CLIENT_GONE, refused: true, status: 499 };

/** Who waits for one run: it is to be cancelled once all have gone (one that cannot go keeps it). */
class Askers {
  private waiting = 0;
  private kept = false;
  readonly gone = new AbortController();
  join(signal: AbortSignal | undefined): void {
    if (!signal) {
      this.kept = true;
      return;
    }
    this.waiting++;
    const leave = () => {
      if (--this.waiting === 0 && !this.kept) this.gone.abort();
    };
    if (signal.aborted) leave();
    else signal.addEventListener("abort", leave, { once: true });
  }
}

/**
 * The answer: the formatted result, or why not (refused: the query's fault;
 * busy: too many at once, with the HTTP status to answer, 503 or 429).
 */
export type QueryReply = { ok: true; body: Uint8Array<ArrayBuffer>; rows: number } | { ok: false; error: string; refused: boolean; busy?: boolean; status?: number };

/** A text answer's body as a string (the body stays bytes on its way out as an HTTP answer). */
export const bodyText = (body: Uint8Array) => Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");

/** A streamed answer: the text as it comes, or an error before anything came. */
export type StreamReply = { ok: true; body: ReadableStream<Uint8Array> } | { ok: false; error: string; refused: boolean; busy?: boolean; status?: number };

/** Most queries running at once with the default settings (processes × concurrency). */
export const MAX_CONCURRENT_QUERIES = DEFAULT_POOL_LIMITS.processes * DEFAULT_POOL_LIMITS.concurrency;

const pools = new Map<string, QueryPool>();
const hooks: { onQuarantine?: (q: Quarantined) => void; onKill?: (reason: string) => void } = {};

/** The pool of query processes for a data dir's log (made on first use, kept in step with the settings). */
export function queryPool(dirs: QueryEngineOptions & { limits?: QueryPoolLimits }): QueryPool {
  const { limits = DEFAULT_POOL_LIMITS, ...engine } = dirs;
  let pool = pools.get(dirs.logsDir);
  if (!pool) {
    pool = new QueryPool(engine, limits, {
      onQuarantine: (q) => pools.get(dirs.logsDir) === pool && reporters.get(dirs.logsDir)?.onQuarantine?.(q),
      onKill: (r) => reporters.get(dirs.logsDir)?.onKill?.(r),
    });
    pools.set(dirs.logsDir, pool);
  } else {
    pool.configure(engine, limits);
  }
  return pool;
}

const reporters = new Map<string, typeof hooks>();

/** The pool of `logsDir`'s log, if it has one (for stats and tests; changes nothing). */
export function findQueryPool(logsDir: string): QueryPool | undefined {
  return pools.get(logsDir);
}

/** Who hears about the pool of `logsDir`: files quarantined, processes killed. */
export function reportQueryPool(logsDir: string, report: typeof hooks): void {
  reporters.set(logsDir, report);
}

/** Stops the query processes of `logsDir` (at server stop). */
export async function closeQueryPool(logsDir: string): Promise<void> {
  const pool = pools.get(logsDir);
  pools.delete(logsDir);
  reporters.delete(logsDir);
  await pool?.close();
}

/** Queries running now, over every pool. */
export function activeQueries(): number {
  let n = 0;
  for (const p of pools.values()) n += p.active;
  return n;
}

/** Queries riding on an identical running one now (no slot; see ride), over every pool. */
export function ridingQueries(): number {
  let n = 0;
  for (const p of pools.values()) n += p.riders;
  return n;
}

/** Queries waiting for a slot now, over every pool. */
export function queuedQueries(): number {
  let n = 0;
  for (const p of pools.values()) n += p.queued;
  return n;
}


/** Queries sent to a query process, and queries answered by sharing a waiting twin's answer, since start. */
export const queryCounts = { run: 0, shared: 0, cached: 0 };

/** A slot and a started query process, or the reply saying why not (GONE once `gone` aborted meanwhile). */
async function start(job: QueryJob, onGranted?: () => void, gone = job.signal): Promise<{ pool: QueryPool; slot: Extract<Slot, { proc: unknown }> } | { ok: false; error: string; refused: boolean; busy?: boolean; status?: number }> {
  const pool = queryPool(job.dirs);
  const slot = await pool.acquire(job.client, gone);
  onGranted?.();
  if ("busy" in slot) return gone?.aborted ? GONE : { ok: false, error: slot.busy, refused: false, busy: true, status: slot.status };
  queryCounts.run++;
  try {
    await slot.proc.ready;
  } catch (err) {
    slot.release();
    return gone?.aborted ? GONE : { ok: false, error: `the query engine could not start: ${(err as Error).message}`, refused: false };
  }
  if (gone?.aborted) {
    slot.release();
    return GONE;
  }
  return { pool, slot };
}

/** Whole-answer queries waiting for a slot, by everything that decides their answer. */
const waitingTwins = new Map<string, { reply: Promise<QueryReply>; askers: Askers }>();

/** A whole-answer query running in a query process: its pool, process and id, and its reply once it has one. */
interface RunningTwin {
  pool: QueryPool;
  proc: QueryProcess;
  id: number;
  /** Its reply as its process gave it (before its own client's leaving is looked at). */
  answered: Promise<QueryReply>;
}

/** Whole-answer queries running in a query process, by the same key: an identical one may ride on one (ride). */
const runningTwins = new Map<string, RunningTwin>();

/** Why the other queries of a process killed for a query past its time limit failed. */
const UNINTERRUPTIBLE = (graceMs: number) => `a query went on ${durationText(graceMs)} past its time limit and could not be interrupted, so its query process was restarted: run the query again`;

/**
 * Runs a query in the query process (DuckDB never runs in the hub's process)
 * and resolves with its whole formatted answer. A query still going
 * `graceMs` past its time limit has its process killed (SIGKILL) and is
 * reported as stopped; the next query starts a new process.
 *
 * Identical queries (same SQL, parameters, format and limits) that arrive
 * while one of them still waits for a slot share its answer: it has not
 * started, so it reads the log as it is after they all came, and the answer is
 * what each would have got (a dashboard's panels opened by several viewers at
 * once cost one run). A query that has started is never joined here; one
 * identical to a query running now rides on it instead (ride): its query
 * process answers it with that run's answer when it would read the same data.
 */
export function runQueryInWorker(job: QueryJob): Promise<QueryReply> {
  // The client is part of it: one client's refusal (query_per_client) is not another's.
  const key = JSON.stringify([job.dirs.logsDir, job.client ?? null, job.sql, job.params ?? [], job.format, job.rowLimit, job.timeoutMs]);
  const running = waitingTwins.has(key) ? undefined : runningTwins.get(key);
  if (running && !job.signal?.aborted) return ride(job, running).then((r) => r ?? queueOrShare(job, key));
  return queueOrShare(job, key);
}

/** Runs `job` when it gets a slot, or shares the answer of the identical query (`key`) waiting for one. */
function queueOrShare(job: QueryJob, key: string): Promise<QueryReply> {
  // Gone before it came (the request read, the connection closed): nothing to run, nothing to share.
  if (job.signal?.aborted) return Promise.resolve(GONE);
  const twin = waitingTwins.get(key);
  if (twin) {
    queryCounts.shared++;
    twin.askers.join(job.signal);
    return twin.reply;
  }
  const askers = new Askers();
  askers.join(job.signal);
  let entry: { reply: Promise<QueryReply>; askers: Askers } | null = null;
  const forget = () => {
    if (entry && waitingTwins.get(key) === entry) waitingTwins.delete(key);
  };
  const reply = runOne(job, key, forget, askers.gone.signal);
  entry = { reply, askers };
  waitingTwins.set(key, entry);
  // Once all have gone, nobody joins it any more; nor once it failed before it got a slot (a process that could not start).
  askers.gone.signal.addEventListener("abort", forget, { once: true });
  reply.then(forget, forget);
  return reply;
}

/**
 * Sends `job`, identical to query `twin` running now, to twin's process
 * without a slot: 8 viewers of one dashboard panel then wait for the run going
 * on rather than queue for the next (with 2 slots, the third to come used to
 * wait for one run to end and then for its own). The process answers it with
 * twin's answer when it would read the same data, as it does for an identical
 * query holding a slot, naming that answer rather than sending a copy: every
 * rider's reply is twin's body, one copy in either process however many ride.
 * Otherwise (null) it is queued as any query. Never more riding at once than
 * the queue holds, nor than query_per_client of one client, and never on a
 * process of settings other than the job's (ridePlace). A rider whose client
 * goes away gives its place back at once.
 */
function ride(job: QueryJob, twin: RunningTwin): Promise<QueryReply | null> {
  const { proc } = twin;
  // The job's settings applied to the pool (as start does), for ridePlace to hold the process to them.
  const pool = queryPool(job.dirs);
  const place = pool === twin.pool ? pool.ridePlace(proc, job.client) : null;
  if (!place) return Promise.resolve(null);
  const { id } = place;
  return new Promise((resolve) => {
    let done = false;
    // Its client gone: it runs nothing, so its place is free at once (as a waiting query's is); the
    // process is told, and whatever it still says of this query is not heard.
    const cancel = () => {
      if (done) return;
      proc.send({ type: "cancel", id });
      finish(null);
    };
    const finish = (r: QueryReply | null) => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      job.signal?.removeEventListener("abort", cancel);
      proc.done(id);
      place.release();
      if (job.signal?.aborted && !r?.ok) resolve(GONE);
      // Not queued again once the server is stopping: no new process is to start.
      else if (!r && pool.isClosed) resolve({ ok: false, error: "the server is shutting down", refused: false, busy: true, status: 503 });
      else resolve(r);
    };
    // The run it waits for ends by its own limit, or its process is killed (onDead): a process that
    // answers neither is past saving, and this query's time is up.
    const limit = setTimeout(() => finish({ ok: false, error: tookTooLong(job.timeoutMs), refused: true }), job.timeoutMs + pool.limits.graceMs);
    job.signal?.addEventListener("abort", cancel, { once: true });
    proc.start(id, { sql: job.sql, format: job.format, rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params, stream: false, rideOn: twin.id }, {
      timeoutMs: job.timeoutMs,
      onFrame: (f) => {
        // Answered as twin (the process names it, answerOf, and sends no body): twin's body, which its
        // own result frame brings, before or after this one.
        if (f.type === "result" && f.answerOf === twin.id) {
          void twin.answered.then((a) => {
            if (a.ok) queryCounts.shared++;
            finish(a.ok ? { ok: true, body: a.body, rows: a.rows } : null);
          });
        } else if (f.type === "error") finish({ ok: false, error: f.error, refused: f.refused });
        else if (f.type === "unshared") finish(null);
      },
      // The run it rode on failed with its process: queued, it runs on a new one, as it would have.
      onDead: () => finish(null),
    });
  });
}

async function runOne(job: QueryJob, key: string, onGranted: () => void, gone: AbortSignal): Promise<QueryReply> {
  const started = await start(job, onGranted, gone);
  if ("ok" in started) return started;
  const { pool, slot } = started;
  const { proc, id } = slot;
  // Known to identical queries that come while it runs (ride), with its reply once it has one.
  let answered!: (r: QueryReply) => void;
  const mine: RunningTwin = { pool, proc, id, answered: new Promise((resolve) => { answered = resolve; }) };
  // Shared by the query process only when its answer depends on the data alone (result-cache.ts).
  const ridable = job.format !== "parquet" && cacheable(job.sql);
  return new Promise((resolve) => {
    let done = false;
    // The query process interrupts the query and answers with an error, which finishes it as usual.
    const cancel = () => { if (!done) proc.send({ type: "cancel", id }); };
    const finish = (r: QueryReply) => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      gone.removeEventListener("abort", cancel);
      proc.done(id);
      if (runningTwins.get(key) === mine) runningTwins.delete(key);
      answered(r);
      slot.release();
      resolve(gone.aborted && !r.ok ? GONE : r);
    };
    const limit = setTimeout(() => {
      // Killed (and so retired) before the slot is freed: a query waiting for a slot must not be given this process.
      pool.kill(proc, UNINTERRUPTIBLE(pool.limits.graceMs));
      finish({ ok: false, error: tookTooLong(job.timeoutMs), refused: true });
    }, job.timeoutMs + pool.limits.graceMs);
    gone.addEventListener("abort", cancel, { once: true });
    if (ridable) runningTwins.set(key, mine);
    proc.start(id, { sql: job.sql, format: job.format, rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params, stream: false }, {
      timeoutMs: job.timeoutMs,
      onFrame: (f) => {
        if (f.type === "result" && f.cached) queryCounts.cached++;
        if (f.type === "result" && f.shared) queryCounts.shared++;
        // The body as it came, bytes: text goes out as the UTF-8 it is, a Parquet file as its bytes.
        if (f.type === "result") finish({ ok: true, body: (f.raw ?? new Uint8Array(0)) as Uint8Array<ArrayBuffer>, rows: f.rows });
        else if (f.type === "error") finish({ ok: false, error: f.error, refused: f.refused });
      },
      onDead: (error) => finish({ ok: false, error, refused: false }),
    });
  });
}

/**
 * Runs a query in the query process and streams its rows (NDJSON or CSV) as
 * DuckDB produces them, one chunk at a time as the reader takes them (a slow
 * reader pauses the query; the hub holds a chunk or two). An error before the
 * first rows is returned as such; one after (row, size or time limit) ends the
 * stream with a last line saying so (`{"error": …}` in NDJSON, `# error: …` in CSV).
 */
export async function streamQueryInWorker(job: QueryJob & { format: "ndjson" | "csv" }): Promise<StreamReply> {
  const started = await start(job);
  if ("ok" in started) return started;
  const { pool, slot } = started;
  const { proc, id } = slot;
  const encoder = new TextEncoder();
  return new Promise((resolve) => {
    let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
    let begun = false;
    let done = false;
    let cancelled = false;
    // The reader cancelled the body, or the client went away (before the first rows too, when there is no body yet).
    const cancel = () => {
      cancelled = true;
      if (!done) proc.send({ type: "cancel", id });
    };
    const body = new ReadableStream<Uint8Array>({
      start: (c) => { controller = c; },
      // The reader wants more: the query process may send its next chunk.
      pull: () => { if (!done) proc.send({ type: "more", id }); },
      cancel,
    }, { highWaterMark: 1 });
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      job.signal?.removeEventListener("abort", cancel);
      proc.done(id);
      slot.release();
    };
    const fail = (error: string, refused: boolean) => {
      if (!begun) {
        finish();
        resolve(job.signal?.aborted ? GONE : { ok: false, error, refused });
        return;
      }
      finish();
      if (cancelled) return;
      try {
        controller?.enqueue(encoder.encode(job.format === "ndjson" ? `${JSON.stringify({ error })}\n` : `# error: ${error}\n`));
        controller?.close();
      } catch { /* the reader is gone */ }
    };
    const limit = setTimeout(() => {
      // Killed before the slot is freed, as in runOne.
      pool.kill(proc, UNINTERRUPTIBLE(pool.limits.graceMs));
      fail(tookTooLong(job.timeoutMs), true);
    }, job.timeoutMs + pool.limits.graceMs);
    job.signal?.addEventListener("abort", cancel, { once: true });
    proc.start(id, { sql: job.sql, format: job.format, rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params, stream: true }, {
      timeoutMs: job.timeoutMs,
      onFrame: (f) => {
        if (f.type === "error") return fail(f.error, f.refused);
        if (f.type === "start") {
          begun = true;
          resolve({ ok: true, body });
        } else if (f.type === "chunk") {
          if (!cancelled) try { controller?.enqueue(encoder.encode(f.text)); } catch { /* the reader is gone */ }
        } else if (f.type === "end") {
          finish();
          if (!cancelled) try { controller?.close(); } catch { /* the reader is gone */ }
        }
      },
      onDead: (error) => fail(error, false),
    });
  });
}
