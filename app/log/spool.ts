import { closeSync, existsSync, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statfsSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { RepeatedLog } from "../core/repeat-log.ts";
import { encodeMarks, encodeRecordInto, recordBound, scanRecords } from "./record.ts";

/** How the spool writes: segment size and age, and how often it fsyncs. */
export interface SpoolOptions {
  segmentBytes: number;
  segmentSeconds: number;
  fsyncMs: number;
  logger: Logger;
  /** Retention of sealed segments, read at each roll so changes apply: days (0: no age limit) and total bytes (0: no size limit). */
  retention?: () => { days: number; bytes: number };
  /** Milliseconds since the epoch, for segment ages, retries and retention (default Date.now; tests move it). */
  now?: () => number;
  /** Told each time a segment is sealed (compaction may take it now). */
  onSeal?: () => void;
}

/** A stretch of a segment file that holds no readable record. */
export interface SegmentDamage {
  offset: number;
  bytes: number;
  reason: string;
}

/** A damaged stretch found at start, with what is known of what it held. */
export interface DamageReport extends SegmentDamage {
  file: string;
  /** Records lost, when the damaged record's own length told (else null: unknown). */
  records: number | null;
  /** Seqs missing across the damage, per stream (`stream a-b`), as far as the records around it tell. */
  missing: string[];
}

/** Recovery collects garbage each time it has read this much of the spool. */
const GC_AFTER_BYTES = 16 * 1024 * 1024;

/** What recovery found when the spool opened. */
export interface RecoveryReport {
  segments: number;
  records: number;
  /** Torn tails of the newest segment (a write cut short: incomplete, or never-written zeros) cut off. */
  truncated: { file: string; offset: number; bytes: number; reason: string }[];
  /** Unreadable stretches kept in place: the file stays, every readable record in it is kept. */
  damaged: DamageReport[];
}

/** A durable() that failed: whether the records are in the log ("no": not stored; "unknown": written, but the fsync failed). */
export class LogWriteError extends Error {
  override name = "LogWriteError";
  constructor(readonly stored: "no" | "unknown", message: string) {
    super(message);
  }
}

const SEGMENT = /^(\d{16})\.wal$/;
/**
 * A second copy of what the segments' marks records hold (see record.ts): the
 * highest segment number used and each stream's last seq. Rewritten (temp
 * file, fsync, rename) when a segment is sealed; the marks record at the head
 * of the newest segment is what makes them safe, so a failure here is logged,
 * never fatal.
 */
const STATE_FILE = "STATE.json";
/** How soon a failed roll, or a write probe while the log cannot write, is tried again. */
const RETRY_MS = 1000;
/** Free space the probe wants before it calls the log writable again (a few bytes free in a page is not room). */
const PROBE_FREE_BYTES = 256 * 1024;

/**
 * The write-ahead spool: every accepted message is appended as a checksummed
 * record. Appends are gathered and written once per event-loop turn (group
 * commit), so the hub never waits for the disk; the file is fsynced every
 * `fsyncMs`, and `durable()` resolves once everything appended so far is fsynced
 * (what an HTTP publish waits for before its 2xx). Segments roll by size and age.
 *
 * Seqs: every segment begins with a marks record (each stream's last seq), and
 * a segment is sealed (so compaction and retention may take it) only once the
 * next one's marks are on disk. Whatever is removed or fails, the newest
 * segment says where each stream goes on.
 */
export class Spool {
  /** -1: no segment open (the disk refused to start one); the write probe retries. */
  private fd: number;
  private segment: string;
  private segmentNumber: number;
  private segmentSize = 0;
  /** Bytes of the segment that are its marks record: a segment holding no more is not rolled by age. */
  private segmentBase = 0;
  private segmentOpenedAt: number;
  /** Milliseconds since the epoch (SpoolOptions.now). */
  private readonly now: () => number;
  /** This turn's records, encoded back to back; grown when a turn needs more. */
  private batch = Buffer.allocUnsafe(1024 * 1024);
  /** The messages of this turn's records (the first `batchCount`; the array is reused, so a turn allocates nothing). */
  private batchMessages: Message[] = [];
  private batchCount = 0;
  private used = 0;
  private flushScheduled = false;
  private unsynced = false;
  private syncing = false;
  /** Bumped when the segment changes: an fsync of the previous file that fails late is not this file's failure. */
  private generation = 0;
  /** Records (counted from open) written (or given up), and fsynced. */
  private writtenThrough = 0;
  private syncedThrough = 0;
  private waiters: { target: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  /** A commitWaiter is waiting: fsync right after the next group write instead of at the timer. */
  private syncAfterWrite = false;
  /** Messages whose write failed since the hub last asked (takeLost). */
  private lost = new Set<Message>();
  private failureSince = 0;
  private lostAtFailure = 0;
  private retryAt = 0;
  private readonly repeats: RepeatedLog;
  /** The spool's timer, armed only while there is work (see arm): an idle spool wakes nobody. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** Why the log cannot write now (null: it can). */
  failure: string | null = null;
  /** Records and bytes appended since open; `lost`: records not stored because their write failed. */
  readonly stats = { appended: 0, bytes: 0, writes: 0, fsyncs: 0, writeErrors: 0, lost: 0 };

  private constructor(readonly dir: string, private readonly opts: SpoolOptions, readonly recovery: RecoveryReport, readonly lastSeq: Map<string, number>, lastNumber: number, newest: string | null) {
    this.repeats = new RepeatedLog(opts.logger);
    this.now = opts.now ?? Date.now;
    this.segmentOpenedAt = this.now();
    this.segmentNumber = lastNumber;
    this.segment = newest ?? this.path(lastNumber + 1);
    this.fd = -1;
    try {
      this.useSegment(lastNumber + 1, Spool.startSegment(dir, lastNumber + 1, lastSeq));
    } catch (err) {
      // A full disk at start: keep the newest segment as the current one (nothing new is sealed), refuse writes until one works.
      this.failure = `could not start a spool segment: ${errorText(err)}`;
      this.failureSince = this.now();
      opts.logger.error("spool: the log cannot write; writes are refused until it can (tried again every second)", { dir, error: this.failure });
      if (newest) {
        try {
          this.fd = openSync(newest, "a", 0o600);
          this.segmentSize = this.segmentBase = statSync(newest).size;
        } catch { /* stays -1: the probe starts a segment when it can */ }
      }
    }
    this.arm();
  }

  /**
   * Opens the spool in `dir`: reads every segment (keeping every readable record,
   * resynchronising after damage, cutting off only the newest segment's torn
   * tail), then starts a new segment that begins with every stream's last seq.
   */
  static open(dir: string, opts: SpoolOptions): Spool {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const report: RecoveryReport = { segments: 0, records: 0, truncated: [], damaged: [] };
    const lastSeq = new Map<string, number>();
    const raise = (stream: string, seq: number) => {
      if ((lastSeq.get(stream) ?? 0) < seq) lastSeq.set(stream, seq);
    };
    let lastNumber = 0;
    const state = Spool.readState(dir, opts.logger);
    if (state) {
      lastNumber = state.last_segment;
      for (const [stream, seq] of Object.entries(state.last_seq)) raise(stream, seq);
    }
    const files = Spool.segments(dir);
    let sinceGc = 0;
    for (const [i, file] of files.entries()) {
      // What the segments before read is garbage: collected before the next is read.
      if (sinceGc > GC_AFTER_BYTES) {
        Bun.gc(true);
        sinceGc = 0;
      }
      lastNumber = Math.max(lastNumber, Number(SEGMENT.exec(file)![1]));
      report.segments++;
      const path = join(dir, file);
      const buf = readFileSync(path);
      const seen = new Map<string, number>();
      let gap: { report: DamageReport; before: Map<string, number>; checked: Set<string> } | null = null;
      for (const step of scanRecords(buf)) {
        if ("record" in step) {
          const r = step.record;
          if ("marks" in r) {
            lastNumber = Math.max(lastNumber, r.marks.last_segment);
            for (const [stream, seq] of Object.entries(r.marks.last_seq)) if (typeof seq === "number") raise(stream, seq);
            continue;
          }
          const m = r.message;
          report.records++;
          raise(m.stream, m.seq);
          if (gap && !gap.checked.has(m.stream)) {
            gap.checked.add(m.stream);
            const before = gap.before.get(m.stream);
            if (before !== undefined && m.seq > before + 1) gap.report.missing.push(`${m.stream} ${before + 1}-${m.seq - 1}`);
          }
          seen.set(m.stream, m.seq);
          continue;
        }
        const d = step.damage;
        const newest = i === files.length - 1;
        if (newest && d.tail && (d.reason === "incomplete" || buf.subarray(d.offset).every((b) => b === 0))) {
          // A write cut short (kill -9, power cut): never acknowledged, so it is cut off.
          const fd = openSync(path, "r+");
          ftruncateSync(fd, d.offset);
          fdatasyncSync(fd);
          closeSync(fd);
          report.truncated.push({ file, offset: d.offset, bytes: d.bytes, reason: d.reason });
          opts.logger.warn("spool: cut off a torn tail (a write cut short, never acknowledged)", { file, offset: d.offset, bytes: d.bytes, reason: d.reason });
          continue;
        }
        const damage: DamageReport = { file, offset: d.offset, bytes: d.bytes, reason: d.reason, records: d.records, missing: [] };
        report.damaged.push(damage);
        gap = { report: damage, before: new Map(seen), checked: new Set() };
      }
      sinceGc += buf.length;
    }
    // Each segment read is up to 64 MiB of file and as much in decoded messages, all garbage once
    // read: collected here, so recovery of a full spool does not leave the hub hundreds of MiB up.
    if (sinceGc > GC_AFTER_BYTES) Bun.gc(true);
    for (const d of report.damaged) {
      opts.logger.error("spool: a segment holds unreadable bytes; the file and every readable record in it are kept", {
        file: d.file, offset: d.offset, bytes: d.bytes, reason: d.reason, records_lost: d.records ?? "unknown", missing: d.missing.join(", ") || "unknown" });
    }
    const spool = new Spool(dir, opts, report, lastSeq, lastNumber, files.length > 0 ? join(dir, files[files.length - 1]!) : null);
    if (spool.fd >= 0 && !spool.failure) spool.saveState("at start");
    return spool;
  }

  /** Writes STATE.json for the segments sealed so far; a failure is logged (throttled), never thrown. */
  private saveState(when: string): void {
    try {
      Spool.writeState(this.dir, this.segmentNumber, this.lastSeq);
    } catch (err) {
      this.repeats.warn("spool: could not write STATE.json (the seqs are safe: the newest segment begins with them)", { when, dir: this.dir, error: err });
    }
  }

  private static readState(dir: string, logger: Logger): { last_segment: number; last_seq: Record<string, number> } | null {
    const path = join(dir, STATE_FILE);
    if (!existsSync(path)) return null;
    try {
      const s = JSON.parse(readFileSync(path, "utf8"));
      if (Number.isInteger(s.last_segment) && typeof s.last_seq === "object" && s.last_seq !== null) return s;
    } catch {
      // reported below
    }
    logger.warn("spool: STATE.json is unreadable; segment numbers and seqs continue from the segments alone", { file: path });
    return null;
  }

  private static writeState(dir: string, lastSegment: number, lastSeq: Map<string, number>): void {
    const tmp = join(dir, `${STATE_FILE}.tmp`);
    try {
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeAll(fd, Buffer.from(JSON.stringify({ last_segment: lastSegment, last_seq: Object.fromEntries(lastSeq) })));
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, join(dir, STATE_FILE));
    } catch (err) {
      try { unlinkSync(tmp); } catch { /* not there */ }
      throw err;
    }
    syncDir(dir);
  }

  /** Creates segment `n` beginning with the marks record (every stream's last seq), on disk before it returns. */
  private static startSegment(dir: string, n: number, lastSeq: Map<string, number>): { fd: number; path: string; bytes: number } {
    const path = join(dir, `${String(n).padStart(16, "0")}.wal`);
    const fd = openSync(path, "a", 0o600);
    try {
      const marks = encodeMarks({ last_segment: n, last_seq: Object.fromEntries(lastSeq) });
      writeAll(fd, marks);
      fdatasyncSync(fd);
      syncDir(dir);
      return { fd, path, bytes: marks.length };
    } catch (err) {
      try { closeSync(fd); } catch { /* already failing */ }
      try { unlinkSync(path); } catch { /* nothing to remove */ }
      throw err;
    }
  }

  private useSegment(n: number, s: { fd: number; path: string; bytes: number }): void {
    this.generation++;
    this.fd = s.fd;
    this.segmentNumber = n;
    this.segment = s.path;
    this.segmentSize = this.segmentBase = s.bytes;
    this.segmentOpenedAt = this.now();
  }

  /** The segment files of a spool folder, oldest first. */
  static segments(dir: string): string[] {
    return readdirSync(dir).filter((f) => SEGMENT.test(f)).sort();
  }

  /**
   * Every message in a segment file, in order. A bad record does not end the
   * read: the rest is searched for the next good record, and each unreadable
   * stretch is pushed onto `damage` (when given).
   */
  static *read(path: string, damage?: SegmentDamage[]): Generator<Message> {
    const buf = readFileSync(path);
    for (const step of scanRecords(buf)) {
      if ("record" in step) {
        if ("message" in step.record) yield step.record.message;
      } else {
        damage?.push({ offset: step.damage.offset, bytes: step.damage.bytes, reason: step.damage.reason });
      }
    }
  }

  /** The segment being written now (never sealed, so never compacted or removed). */
  get current(): string {
    return this.segment;
  }

  /** A hub sink: queues the message for this turn's write. Never blocks on disk. */
  append(m: Message): void {
    if (this.closed) return;
    const bound = recordBound(m);
    if (this.used + bound > this.batch.length) this.grow(this.used + bound);
    this.used = encodeRecordInto(this.batch, this.used, m);
    this.batchMessages[this.batchCount++] = m;
    this.stats.appended++;
    if ((this.lastSeq.get(m.stream) ?? 0) < m.seq) this.lastSeq.set(m.stream, m.seq);
    // Within a long turn (a flood), write every 4 MiB rather than let the batch grow.
    if (this.used >= 4 * 1024 * 1024) this.flush();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Resolves when every message appended so far is written and fsynced; rejects
   * with a LogWriteError when the last of them could not be written (disk full,
   * I/O error: not stored) or its fsync failed (stored: unknown).
   */
  durable(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ target: this.stats.appended, resolve, reject });
      this.flush();
      this.sync();
    });
  }

  /**
   * A durable() that does not write now and can be extended: it waits for the
   * records up to `cover(n)` (counted from open, as `stats.appended`), settling
   * after the turn's group write that holds them and the fsync started right
   * after it; it rejects if their write or fsync failed. Registered before the
   * records are appended, so a write that fails first is never taken for one
   * that worked (acknowledged websocket publishers use it).
   */
  commitWaiter(): { cover(target: number): void; done: Promise<void> } {
    let waiter!: Spool["waiters"][number];
    const done = new Promise<void>((resolve, reject) => {
      waiter = { target: this.stats.appended, resolve, reject };
    });
    // A failure can settle it before its owner awaits it (a write within the same turn): never an unhandled rejection.
    done.catch(() => {});
    this.waiters.push(waiter);
    this.syncAfterWrite = true;
    // Flush (and so fsync) at the end of this turn even if nothing more is appended.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return { cover: (target) => { waiter.target = target; }, done };
  }

  /**
   * The messages whose write failed since the last call (the hub asks after each
   * turn's write, before delivering): null when there were none, else a test.
   */
  takeLost(): ((m: Message) => boolean) | null {
    if (this.lost.size === 0) return null;
    const lost = this.lost;
    this.lost = new Set();
    return (m) => lost.has(m);
  }

  /** Writes what is pending: one write for the whole batch. */
  flush(): void {
    this.flushScheduled = false;
    if (this.used > 0) this.writeBatch();
    this.rollIfDue();
    if (this.syncAfterWrite) {
      this.syncAfterWrite = false;
      this.sync();
    }
  }

  /** Seals the current segment once it is big or old enough (also when no message comes to trigger it, so compaction is not held up). */
  private rollIfDue(): void {
    const due = this.segmentSize >= this.opts.segmentBytes || (this.segmentSize > this.segmentBase && this.now() - this.segmentOpenedAt >= this.opts.segmentSeconds * 1000);
    if (due && this.fd >= 0 && !this.closed && this.now() >= this.retryAt) {
      try {
        this.roll();
      } catch (err) {
        this.retryAt = this.now() + RETRY_MS;
        this.repeats.error("spool could not start a new segment; writing on in the current one", { segment: this.segment, error: err });
      }
    }
  }

  private writeBatch(): void {
    const batch = this.batch.subarray(0, this.used);
    const count = this.batchCount;
    const through = this.stats.appended;
    this.used = 0;
    this.batchCount = 0;
    // After a flood turn, give back a grown buffer (once this write is done with it).
    const shrink = this.batch.length > 8 * 1024 * 1024;
    try {
      if (this.fd < 0) throw new Error(this.failure ?? "no spool segment is open");
      writeAll(this.fd, batch);
      this.stats.writes++;
      this.stats.bytes += batch.length;
      this.segmentSize += batch.length;
      this.unsynced = true;
      this.writtenThrough = through;
      if (this.failure) this.writesAgain();
    } catch (err) {
      // Cut off whatever part of the batch did get written, so none of it is in the log (a retry does not duplicate).
      let cut = this.fd < 0;
      if (!cut) try { ftruncateSync(this.fd, this.segmentSize); cut = true; } catch { /* below */ }
      this.stats.writeErrors++;
      this.stats.lost += count;
      for (let i = 0; i < count; i++) this.lost.add(this.batchMessages[i]!);
      this.writtenThrough = through;
      const reason = errorText(err);
      this.failed(reason, "spool write failed; the messages of this write are not in the log", { segment: this.segment, messages: count, error: reason });
      const from = through - count;
      this.settle((w) => w.target > from, new LogWriteError(cut ? "no" : "unknown", cut
        ? `the log could not write it (${reason}), so it is not stored`
        : `the log could not write it (${reason}) and could not cut off the part written, so it may be stored in part`));
    }
    // Let go of the messages the reused array still points at after a big turn.
    if (shrink || count > 16_384) this.batchMessages = [];
    if (shrink) this.batch = Buffer.allocUnsafe(1024 * 1024);
    this.arm();
  }

  /** Flushes, fsyncs and closes the spool. */
  close(): void {
    if (this.closed) return;
    this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closed = true;
    if (this.fd >= 0) {
      try {
        fdatasyncSync(this.fd);
        this.syncedThrough = this.writtenThrough;
      } catch (err) {
        this.settle(() => true, new LogWriteError("unknown", `the log wrote it but could not fsync it (${errorText(err)}): it may not survive a power cut`));
      }
      closeSync(this.fd);
      this.fd = -1;
    }
    // The next open starts a new segment: this one counts as sealed (its marks and records cover it anyway).
    this.saveState("at close");
    this.settle(() => true);
    this.repeats.flush();
  }

  /** The timer's work: the fsync, the throttled log's counts, (while the log cannot write) a write probe, and sealing by age. */
  private tick(): void {
    this.sync();
    this.repeats.flush();
    if (this.failure && this.used === 0 && this.now() >= this.retryAt) this.probe();
    else if (!this.closed) this.rollIfDue();
    this.arm();
  }

  /**
   * Arms the timer when there is work for it: within fsyncMs while records wait
   * for their fsync, the log cannot write (probe, throttled error counts) or a
   * roll failed; else, while the segment holds records, for when it is due to be
   * sealed by age. With nothing written since the last seal it stays off.
   */
  private arm(): void {
    if (this.closed || this.timer) return;
    const fsyncMs = Math.max(10, this.opts.fsyncMs);
    let delay: number | null = null;
    if (this.unsynced || this.syncing || this.failure !== null || this.retryAt > this.now() || this.repeats.waiting) delay = fsyncMs;
    else if (this.segmentSize > this.segmentBase) delay = Math.max(fsyncMs, this.segmentOpenedAt + this.opts.segmentSeconds * 1000 - this.now());
    if (delay === null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tick();
    }, delay);
  }

  /** While the log cannot write and nothing is being appended (writes refused): tries a small write to see if it can again. */
  private probe(): void {
    this.retryAt = this.now() + RETRY_MS;
    try {
      const fs = statfsSync(this.dir);
      if (fs.bavail * fs.bsize < PROBE_FREE_BYTES) throw new Error(`only ${fs.bavail * fs.bsize} bytes free on the spool's file system`);
      if (this.fd < 0) {
        this.useSegment(this.segmentNumber + 1, Spool.startSegment(this.dir, this.segmentNumber + 1, this.lastSeq));
      } else {
        const marks = encodeMarks({ last_segment: this.segmentNumber, last_seq: Object.fromEntries(this.lastSeq) });
        writeAll(this.fd, marks);
        this.segmentSize += marks.length;
        this.unsynced = true;
      }
      this.writesAgain();
    } catch (err) {
      if (this.fd >= 0) try { ftruncateSync(this.fd, this.segmentSize); } catch { /* the next start cuts a torn tail */ }
      this.repeats.error("spool: the log still cannot write", { segment: this.segment, error: errorText(err) });
    }
  }

  private failed(reason: string, what: string, fields: Record<string, unknown>): void {
    this.repeats.error(what, fields);
    this.arm();
    if (this.failure) return;
    this.failure = reason;
    this.failureSince = this.now();
    this.lostAtFailure = this.stats.lost - (fields.messages as number ?? 0);
  }

  private writesAgain(): void {
    this.opts.logger.warn("spool: the log can write again", { after_seconds: Math.round((this.now() - this.failureSince) / 1000), messages_not_stored: this.stats.lost - this.lostAtFailure, was: this.failure });
    this.failure = null;
  }

  /** Starts an fsync (off the event loop) if anything is unsynced; settles durable() waiters after it. */
  private sync(): void {
    if (this.syncing || this.closed) return;
    if (!this.unsynced) {
      this.syncedThrough = this.writtenThrough;
      this.settle((w) => w.target <= this.syncedThrough);
      return;
    }
    const target = this.writtenThrough;
    const generation = this.generation;
    this.unsynced = false;
    this.syncing = true;
    fdatasync(this.fd, (err) => {
      this.syncing = false;
      this.stats.fsyncs++;
      // A segment sealed meanwhile was fsynced by the roll itself: a late error on its old descriptor is not a loss.
      if (err && generation === this.generation) {
        this.stats.writeErrors++;
        this.failed(`fsync: ${err.message}`, "spool fsync failed", { segment: this.segment, error: err.message });
        this.settle((w) => w.target <= target, new LogWriteError("unknown", `the log wrote it but could not fsync it (${err.message}): it may not survive a power cut`));
      } else {
        this.syncedThrough = Math.max(this.syncedThrough, target);
        this.settle((w) => w.target <= this.syncedThrough);
      }
      if (this.waiters.length > 0) this.sync();
    });
  }

  /** Resolves (or, given an error, rejects) the durable() waiters that `which` picks. */
  private settle(which: (w: Spool["waiters"][number]) => boolean, err?: Error): void {
    if (this.waiters.length === 0) return;
    const keep: Spool["waiters"] = [];
    for (const w of this.waiters) {
      if (!which(w)) keep.push(w);
      else if (err) w.reject(err);
      else w.resolve();
    }
    this.waiters = keep;
  }

  /** Makes room for at least `bytes` in the batch buffer, keeping what is in it. */
  private grow(bytes: number): void {
    const next = Buffer.allocUnsafe(Math.max(bytes, this.batch.length * 2));
    this.batch.copy(next, 0, 0, this.used);
    this.batch = next;
  }

  /**
   * Seals the current segment and starts the next: the current one is fsynced,
   * the next one's marks are on disk, and only then is the current one sealed
   * (compaction and retention may take it). If any step fails, the current
   * segment stays in use.
   */
  private roll(): void {
    fdatasyncSync(this.fd);
    this.unsynced = false;
    this.syncedThrough = this.writtenThrough;
    const old = this.fd;
    this.useSegment(this.segmentNumber + 1, Spool.startSegment(this.dir, this.segmentNumber + 1, this.lastSeq));
    closeSync(old);
    this.settle((w) => w.target <= this.syncedThrough);
    this.saveState("when sealing a segment");
    this.enforceRetention();
    this.opts.onSeal?.();
  }

  /**
   * Removes sealed segments, oldest first, that are older than the retention age
   * or beyond the retention size (the segment being written is never removed).
   * Returns the files removed.
   */
  enforceRetention(now = this.now()): string[] {
    const limits = this.opts.retention?.();
    if (!limits || (limits.days === 0 && limits.bytes === 0)) return [];
    const sealed = Spool.segments(this.dir).map((f) => join(this.dir, f)).filter((p) => p !== this.segment)
      .map((path) => { const st = statSync(path); return { path, size: st.size, mtime: st.mtimeMs }; });
    let total = sealed.reduce((a, s) => a + s.size, 0) + this.segmentSize;
    const removed: string[] = [];
    for (const seg of sealed) {
      const tooOld = limits.days > 0 && now - seg.mtime > limits.days * 86_400_000;
      const tooBig = limits.bytes > 0 && total > limits.bytes;
      if (!tooOld && !tooBig) break;
      unlinkSync(seg.path);
      total -= seg.size;
      removed.push(seg.path);
      this.opts.logger.warn("log retention removed a sealed spool segment", { file: seg.path, bytes: seg.size, reason: tooOld ? `older than ${limits.days} days` : `log over ${limits.bytes} bytes` });
    }
    return removed;
  }

  private path(n: number): string {
    return join(this.dir, `${String(n).padStart(16, "0")}.wal`);
  }
}

function writeAll(fd: number, buf: Uint8Array): void {
  let written = 0;
  while (written < buf.length) written += writeSync(fd, buf, written);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code && !String(e.message).includes(e.code) ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}
