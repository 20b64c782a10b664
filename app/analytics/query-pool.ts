import type { Subprocess } from "bun";
import { residentBytes, runInBackground, selfCommand } from "../core/self-process.ts";
import type { CompactJob } from "../log/compact-process.ts";
import type { CompactionOutcome } from "../log/compactor.ts";
import type { Quarantined } from "../log/quarantine.ts";
import type { QueryEngineOptions } from "./engine.ts";
import { encodeFrame, readFrames } from "./frames.ts";
import type { FromEngine, ToEngine } from "./protocol.ts";

/** How big the query side may get; settings query_*. */
export interface QueryPoolLimits {
  /** Query processes at most (each holds a DuckDB). */
  processes: number;
  /** Queries one process runs at once (each on its own connection). */
  concurrency: number;
  /** Queries that may wait for a slot; past that, 503. */
  queue: number;
  /** Queries one client may have running or waiting (history); past that, 429. */
  perClient: number;
  /** Largest answer of one query, in bytes. */
  resultBytes: number;
  /** Answers kept for identical queries over unchanged data, in bytes (0: none kept); see result-cache.ts. */
  cacheBytes: number;
  /** A query process whose resident memory passes this is killed (its queries fail). */
  rssBytes: number;
  /** A process with no query for this long exits, giving its memory back (0: never). */
  idleMs: number;
  /** A query running this long moves its process to SCHED_IDLE until it ends (0: never); see LongQueryYield. */
  yieldMs: number;
  /** How long past its time limit a query may take to stop before its process is killed. */
  graceMs: number;
}

/** How long after a compaction run its memory allowance stays (until its memory has gone back). */
const COMPACTION_MEMORY_GRACE_MS = 5000;
/** How long a query process asked to exit (its stdin closed) has before it is killed. */
export const CLOSE_GRACE_MS = 5000;

/** Why a query whose client went away was not answered. */
export const CLIENT_GONE = "the client went away, so the query was cancelled";

/** Defaults for a 512 MB box. */
export const DEFAULT_POOL_LIMITS: QueryPoolLimits = {
  processes: 1, concurrency: 2, queue: 16, perClient: 4, resultBytes: 32 * 1024 * 1024, cacheBytes: 8 * 1024 * 1024, rssBytes: 384 * 1024 * 1024, idleMs: 300_000, yieldMs: 250, graceMs: 3000,
};

/** What a query process was started with that its answers depend on: one with another key retires once idle. */
export function configKey(dirs: QueryEngineOptions, limits: QueryPoolLimits): string {
  return JSON.stringify([dirs, limits.resultBytes, limits.cacheBytes, limits.yieldMs]);
}

/** One more (`by` 1) or one fewer (-1) for `client` in `counts`, a client at 0 forgotten; nothing without a client. */
function countClient(counts: Map<string, number>, client: string | undefined, by: 1 | -1): void {
  if (client === undefined) return;
  const n = (counts.get(client) ?? (by < 0 ? 1 : 0)) + by;
  if (n > 0) counts.set(client, n);
  else counts.delete(client);
}

/** What a query in flight is told by its process. */
interface Listener {
  onFrame(frame: FromEngine): void;
  /** The process died (killed, crashed or stopped); the query is over. */
  onDead(error: string): void;
  timeoutMs: number;
}

/** One query process: a child running `__query-engine`, with the queries in flight on it. */
export class QueryProcess {
  private readonly proc: Subprocess<"pipe", "pipe", "inherit">;
  private readonly inflight = new Map<number, Listener>();
  private killReason: string | null = null;
  /** Resolves when DuckDB is open; rejects when the process died first. */
  readonly ready: Promise<void>;
  dead = false;
  /** Killed or asked to exit: takes no new query. */
  retired = false;
  /** Slots taken (queries running or starting). */
  running = 0;
  /** A compaction run is going on here (it takes no query slot). */
  compacting = false;
  /** The memory a compaction run here may use, allowed on top of query_rss_mb (see QueryPool.compact). */
  compactingBytes = 0;
  compactingGrace: ReturnType<typeof setTimeout> | null = null;
  /** Its idle time ran out during a compaction run: it exits when the run ends. */
  idleDue = false;
  readonly startedAt = Date.now();
  readyMs = 0;
  idleTimer: ReturnType<typeof setTimeout> | null = null;
  readonly configKey: string;

  constructor(dirs: QueryEngineOptions, limits: QueryPoolLimits, private readonly events: { onExit(p: QueryProcess, reason: string): void; onQuarantine(q: Quarantined): void }) {
    this.configKey = configKey(dirs, limits);
    this.proc = Bun.spawn(selfCommand(["__query-engine"]), { stdin: "pipe", stdout: "pipe", stderr: "inherit", env: process.env });
    runInBackground(this.proc.pid);
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej; });
    this.ready.catch(() => {});
    this.send({ type: "open", dirs, resultBytes: limits.resultBytes, cacheBytes: limits.cacheBytes, yieldMs: limits.yieldMs });
    const reading = readFrames(this.proc.stdout, (f) => {
      const frame = f as FromEngine;
      if (frame.type === "ready") {
        this.readyMs = Date.now() - this.startedAt;
        readyResolve();
      } else if (frame.type === "fatal") this.killReason ??= frame.error;
      else if (frame.type === "quarantined") this.events.onQuarantine(frame);
      else this.inflight.get(frame.id)?.onFrame(frame);
    }).catch(() => { /* the process went away: exited below */ });
    // Its last frames (a "fatal" saying why) are read before its exit is handled.
    void Promise.all([this.proc.exited, reading]).then(([code]) => {
      this.dead = true;
      const reason = this.killReason ?? `the query process exited unexpectedly (code ${code}); run the query again`;
      readyReject(new Error(reason));
      for (const l of [...this.inflight.values()]) l.onDead(reason);
      this.inflight.clear();
      this.events.onExit(this, reason);
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Resident memory now. */
  rss(): number {
    return residentBytes(this.proc.pid);
  }

  send(frame: ToEngine): void {
    if (this.dead) return;
    try {
      this.proc.stdin.write(encodeFrame(frame));
      void this.proc.stdin.flush();
    } catch {
      // a closed pipe: the exit handler reports it
    }
  }

  /** Starts query `id` on this process; `listener` hears its frames. */
  start(id: number, job: Omit<Extract<ToEngine, { type: "query" }>, "type" | "id">, listener: Listener): void {
    this.inflight.set(id, listener);
    this.send({ type: "query", id, ...job });
  }

  /** Sends compaction job `id`; `listener` hears its "compacted" frame, or the process's death. */
  compact(id: number, job: CompactJob, listener: Listener): void {
    this.inflight.set(id, listener);
    this.send({ type: "compact", id, job });
  }

  /** Forgets a query that is over. */
  done(id: number): void {
    this.inflight.delete(id);
  }

  /** Kills the process at once (SIGKILL); every query on it fails with `reason`. */
  kill(reason: string): void {
    if (this.dead) return;
    this.retired = true;
    this.killReason ??= reason;
    this.proc.kill("SIGKILL");
  }

  /**
   * Asks the process to exit (closes its stdin); one still there CLOSE_GRACE_MS
   * later is killed (SIGKILL), so an idle exit always gives its memory back.
   * (Seen about once in 25 idle exits in a test: the process closed, no query
   * or compaction on it, yet still there, waiting in epoll, 30 s later.)
   */
  close(): void {
    if (this.closing) return; // asked already
    this.retired = true;
    this.killReason ??= "the query process was stopped";
    try { void this.proc.stdin.end(); } catch { /* gone already */ }
    this.closing = setTimeout(() => {
      if (this.dead) return;
      console.error(`query process ${this.proc.pid}: still running ${CLOSE_GRACE_MS / 1000} s after it was asked to exit; killed`);
      this.proc.kill("SIGKILL");
    }, CLOSE_GRACE_MS);
    this.closing.unref?.();
    void this.proc.exited.then(() => clearTimeout(this.closing!));
  }

  private closing: ReturnType<typeof setTimeout> | null = null;

  /** Waits until the process has exited. */
  exited(): Promise<number> {
    return this.proc.exited;
  }
}

/**
 * A slot to run one query on, or why there is none: 429, the client's share is
 * full; 503, the queue is; 499 (as nginx logs it), the client went away while
 * its query waited.
 */
export type Slot = { proc: QueryProcess; id: number; release(): void } | { busy: string; status: 429 | 503 | 499 };

/**
 * The hub's query processes for one data dir: up to `processes` of them, each
 * running up to `concurrency` queries; more wait in a bounded queue, and past
 * that a query is refused (503). One client may hold `perClient` slots or
 * waiting places at most (429 past that). While queries run, a watchdog kills
 * a process whose memory passes `rssBytes`; a process idle for `idleMs` exits.
 */
export class QueryPool {
  private readonly procs: QueryProcess[] = [];
  private readonly waiting: { client?: string; grant: (s: Slot) => void }[] = [];
  private readonly perClient = new Map<string, number>();
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private nextId = 1;
  /** Queries riding on identical running ones (ridePlace), in all and by client. */
  private riding = 0;
  private readonly ridersOf = new Map<string, number>();
  private closed = false;
  /** Counters for stats and tests. */
  readonly stats = { started: 0, killed: 0, idleExits: 0, lastReadyMs: 0, quarantined: 0 };

  constructor(private dirs: QueryEngineOptions, public limits: QueryPoolLimits, private readonly hooks: { onQuarantine?: (q: Quarantined) => void; onKill?: (reason: string) => void } = {}) {}

  /** Applies new folders or limits (settings changed): processes with other settings retire once idle. */
  configure(dirs: QueryEngineOptions, limits: QueryPoolLimits): void {
    this.dirs = dirs;
    this.limits = limits;
  }

  /** Queries running now (slots taken). */
  get active(): number {
    return this.procs.reduce((a, p) => a + p.running, 0);
  }

  /** Queries waiting for a slot now. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Queries riding on identical running ones now (ridePlace). */
  get riders(): number {
    return this.riding;
  }

  /** True once the pool was stopped (close): it takes no query any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The live processes (for stats and tests). */
  processes(): readonly QueryProcess[] {
    return this.procs;
  }

  /**
   * Takes a slot, waiting in the queue when all are taken; refuses when the
   * queue (or the client's share) is full. A wait ends when `gone` aborts (its
   * client went away), giving its place back.
   */
  acquire(client?: string, gone?: AbortSignal): Promise<Slot> {
    if (this.closed) return Promise.resolve({ busy: "the server is shutting down", status: 503 });
    if (gone?.aborted) return Promise.resolve({ busy: CLIENT_GONE, status: 499 });
    if (client !== undefined && (this.perClient.get(client) ?? 0) >= this.limits.perClient) {
      return Promise.resolve({ busy: `this client has ${this.limits.perClient} queries running or waiting already (query_per_client); wait for them to finish`, status: 429 });
    }
    const slot = this.take(client);
    if (slot) return Promise.resolve(slot);
    if (this.waiting.length >= this.limits.queue) {
      return Promise.resolve({ busy: `${this.active} queries are running already and ${this.waiting.length} are waiting (query_queue); try again in a moment`, status: 503 });
    }
    countClient(this.perClient, client, 1);
    return new Promise((grant) => {
      const place = { client, grant };
      this.waiting.push(place);
      gone?.addEventListener("abort", () => {
        const i = this.waiting.indexOf(place);
        if (i < 0) return; // it has its slot already
        this.waiting.splice(i, 1);
        this.unclaim(client);
        grant({ busy: CLIENT_GONE, status: 499 });
      }, { once: true });
    });
  }

  /**
   * A place for a query riding on an identical one running now on `proc`
   * (run-query.ts, ride): no slot, as it never runs itself, and not in the
   * client's share (query_per_client) either: the query it rides on is that
   * client's own, holding its place, as identical queries waiting together
   * hold one. Each costs the process a look at the data version, so at most
   * `queue` ride at once, and at most `perClient` of one client (past that,
   * its identical queries wait together as before). Null when either is full,
   * or when `proc` may not answer a query asked now: gone, retiring, or started
   * with other settings (a query asked after a change gets a process with the
   * new ones, as `take` gives).
   */
  ridePlace(proc: QueryProcess, client?: string): { id: number; release(): void } | null {
    if (this.closed || this.riding >= this.limits.queue) return null;
    if (proc.dead || proc.retired || proc.configKey !== configKey(this.dirs, this.limits)) return null;
    if (client !== undefined && (this.ridersOf.get(client) ?? 0) >= this.limits.perClient) return null;
    this.riding++;
    countClient(this.ridersOf, client, 1);
    let released = false;
    return {
      id: this.nextId++,
      release: () => {
        if (released) return;
        released = true;
        this.riding--;
        countClient(this.ridersOf, client, -1);
      },
    };
  }

  /** One query fewer for `client` (running or waiting). */
  private unclaim(client: string | undefined): void {
    countClient(this.perClient, client, -1);
  }

  /** A free slot now, or null. */
  private take(client: string | undefined, counted = false): Slot | null {
    const key = configKey(this.dirs, this.limits);
    for (const p of this.procs) if (p.configKey !== key && p.running === 0 && !p.compacting) p.close();
    const live = this.procs.filter((p) => !p.dead && !p.retired && p.configKey === key);
    let proc = live.filter((p) => p.running < this.limits.concurrency).sort((a, b) => a.running - b.running)[0];
    if (!proc) {
      if (live.length >= this.limits.processes) return null;
      proc = this.spawn();
    }
    if (proc.idleTimer) clearTimeout(proc.idleTimer);
    proc.idleTimer = null;
    proc.idleDue = false;
    proc.running++;
    if (!counted) countClient(this.perClient, client, 1);
    this.watch();
    let released = false;
    return {
      proc,
      id: this.nextId++,
      release: () => {
        if (released) return;
        released = true;
        proc.running--;
        this.unclaim(client);
        this.dispatch();
        if (proc.running === 0 && !proc.dead) this.idle(proc);
      },
    };
  }

  /** Hands free slots to waiting queries, oldest first. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      const slot = this.take(next.client, true);
      if (!slot) return;
      this.waiting.shift();
      next.grant(slot);
    }
  }

  private spawn(): QueryProcess {
    const proc = new QueryProcess(this.dirs, this.limits, {
      onQuarantine: (q) => { this.stats.quarantined++; this.hooks.onQuarantine?.(q); },
      onExit: (p) => {
        const i = this.procs.indexOf(p);
        if (i >= 0) this.procs.splice(i, 1);
        if (p.idleTimer) clearTimeout(p.idleTimer);
        if (!this.closed) this.dispatch();
      },
    });
    void proc.ready.then(() => { this.stats.lastReadyMs = proc.readyMs; }, () => {});
    this.procs.push(proc);
    this.stats.started++;
    return proc;
  }

  /**
   * Runs a compaction job in a warm query process (one that is up, ready and
   * current), or returns null when there is none: compaction then needs a
   * process of its own. Past `timeoutMs` the process is killed (compaction is
   * crash-safe; the queries on it fail and the next one starts a new process).
   */
  compact(job: CompactJob, timeoutMs: number): Promise<CompactionOutcome> | null {
    if (this.closed) return null;
    const key = configKey(this.dirs, this.limits);
    const proc = this.procs.find((p) => !p.dead && !p.retired && p.readyMs > 0 && !p.compacting && p.configKey === key);
    if (!proc) return null;
    const id = this.nextId++;
    // Compaction does not keep the process up: its idle time counts from its last query.
    proc.compacting = true;
    // Its DuckDB's limit, and as much again for the decoded messages and buffers (compaction.ts measures
    // a full segment's peak at about twice the limit); kept a few seconds after, while that memory goes.
    if (proc.compactingGrace) clearTimeout(proc.compactingGrace);
    proc.compactingBytes = 2 * job.memoryMb * 1024 * 1024;
    return new Promise<CompactionOutcome>((resolve) => {
      const limit = setTimeout(() => this.kill(proc, `log compaction in the query process took longer than ${Math.round(timeoutMs / 60_000)} minutes`), timeoutMs);
      const finish = (o: CompactionOutcome) => {
        clearTimeout(limit);
        proc.done(id);
        proc.compacting = false;
        proc.compactingGrace = setTimeout(() => { if (!proc.compacting) proc.compactingBytes = 0; }, COMPACTION_MEMORY_GRACE_MS);
        proc.compactingGrace.unref?.();
        if (proc.idleDue && proc.running === 0 && !proc.dead && !proc.retired) {
          this.stats.idleExits++;
          proc.close();
        }
        resolve(o);
      };
      proc.compact(id, job, {
        timeoutMs,
        onFrame: (f) => { if (f.type === "compacted") finish(f.outcome); },
        onDead: (reason) => finish({ ok: false, error: `the query process running compaction went away: ${reason}` }),
      });
    });
  }

  /** Kills `proc` (SIGKILL) because of `reason`; its queries fail with it, the next query starts a new one. */
  kill(proc: QueryProcess, reason: string): void {
    if (proc.dead) return;
    this.stats.killed++;
    this.hooks.onKill?.(reason);
    proc.kill(reason);
  }

  private idle(proc: QueryProcess): void {
    if (this.limits.idleMs <= 0) return;
    proc.idleTimer = setTimeout(() => {
      if (proc.running > 0 || proc.dead || proc.retired) return;
      if (proc.compacting) {
        proc.idleDue = true;
        return;
      }
      this.stats.idleExits++;
      proc.close();
    }, this.limits.idleMs);
    proc.idleTimer.unref?.();
  }

  /** While queries run, checks each busy process's memory twice a second. */
  private watch(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      if (this.active === 0) {
        clearInterval(this.watchdog!);
        this.watchdog = null;
        return;
      }
      for (const p of this.procs) {
        if (p.running === 0 || p.dead) continue;
        const rss = p.rss();
        // A compaction run in the same process brings its own DuckDB and memory limit: allowed on top.
        if (rss > this.limits.rssBytes + p.compactingBytes) {
          const allowed = `query_rss_mb: ${Math.round(this.limits.rssBytes / 1048576)}${p.compactingBytes ? `, plus ${Math.round(p.compactingBytes / 1048576)} for the log compaction in it` : ""}`;
          this.kill(p, `the query process used ${Math.round(rss / 1048576)} MB of memory, more than allowed (${allowed}); its queries were stopped: select less, or aggregate`);
        }
      }
    }, 250);
    this.watchdog.unref?.();
  }

  /** Stops every process and refuses new queries. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    for (const w of this.waiting.splice(0)) w.grant({ busy: "the server is shutting down", status: 503 });
    const procs = [...this.procs];
    for (const p of procs) p.close();
    const deadline = Bun.sleep(2000).then(() => "late");
    for (const p of procs) {
      if ((await Promise.race([p.exited(), deadline])) === "late") p.kill("the server is shutting down");
    }
  }
}
