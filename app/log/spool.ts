import { closeSync, existsSync, fdatasync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { decodeRecord, encodeRecordInto, recordBound } from "./record.ts";

/** How the spool writes: segment size and age, and how often it fsyncs. */
export interface SpoolOptions {
  segmentBytes: number;
  segmentSeconds: number;
  fsyncMs: number;
  logger: Logger;
  /** Retention of sealed segments, read at each roll so changes apply: days (0: no age limit) and total bytes (0: no size limit). */
  retention?: () => { days: number; bytes: number };
}

/** What recovery found when the spool opened. */
export interface RecoveryReport {
  segments: number;
  records: number;
  /** Torn or corrupt tails cut off: never read as data. */
  truncated: { file: string; offset: number; bytes: number; reason: string }[];
}

/** Bytes of a segment that could not be read as records. */
export interface SegmentDamage { offset: number; bytes: number; reason: string }

const SEGMENT = /^(\d{16})\.wal$/;
/**
 * What the spool must remember beyond its segments (which compaction and retention
 * remove): the highest segment number used, so numbers (and the Parquet file names
 * made from them) are never used twice, and each stream's last seq, so streams keep
 * counting up across restarts. Rewritten (temp file, fsync, rename) whenever a
 * segment is sealed.
 */
const STATE_FILE = "STATE.json";

/**
 * The write-ahead spool: every accepted message is appended as a checksummed
 * record. Appends are gathered and written once per event-loop turn (group
 * commit), so the hub never waits for the disk; the file is fsynced every
 * `fsyncMs`, and `durable()` resolves once everything appended so far is fsynced
 * (what an HTTP publish waits for before its 2xx). Segments roll by size and age.
 */
export class Spool {
  private fd: number;
  private segment: string;
  private segmentNumber: number;
  private segmentSize: number;
  private segmentOpenedAt = Date.now();
  /** This turn's records, encoded back to back; grown when a turn needs more. */
  private batch = Buffer.allocUnsafe(1024 * 1024);
  private used = 0;
  private flushScheduled = false;
  private unsynced = false;
  private syncing = false;
  private waiters: { resolve: () => void; reject: (err: Error) => void; errorsBefore: number }[] = [];
  private lastError = "";
  /** The fsync timer: armed by a write, so an idle spool wakes nobody. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** Records and bytes appended since open. */
  readonly stats = { appended: 0, bytes: 0, writes: 0, fsyncs: 0, writeErrors: 0 };

  private constructor(readonly dir: string, private readonly opts: SpoolOptions, readonly recovery: RecoveryReport, readonly lastSeq: Map<string, number>, lastNumber: number) {
    this.segmentNumber = lastNumber + 1;
    this.segment = this.path(this.segmentNumber);
    this.fd = openSync(this.segment, "a");
    this.segmentSize = 0;
  }

  /** Opens the spool in `dir`: recovers every segment (cutting off torn tails), then starts a new segment. */
  static open(dir: string, opts: SpoolOptions): Spool {
    mkdirSync(dir, { recursive: true });
    const report: RecoveryReport = { segments: 0, records: 0, truncated: [] };
    const lastSeq = new Map<string, number>();
    let lastNumber = 0;
    const state = Spool.readState(dir, opts.logger);
    if (state) {
      lastNumber = state.last_segment;
      for (const [stream, seq] of Object.entries(state.last_seq)) lastSeq.set(stream, seq);
    }
    for (const file of Spool.segments(dir)) {
      lastNumber = Math.max(lastNumber, Number(SEGMENT.exec(file)![1]));
      report.segments++;
      const path = join(dir, file);
      const buf = readFileSync(path);
      let offset = 0;
      while (offset < buf.length) {
        const r = decodeRecord(buf, offset);
        if (!r.ok) {
          const fd = openSync(path, "r+");
          ftruncateSync(fd, offset);
          fdatasyncSync(fd);
          closeSync(fd);
          report.truncated.push({ file, offset, bytes: buf.length - offset, reason: r.reason });
          opts.logger.warn("spool: cut off a torn or corrupt tail", { file, offset, bytes: buf.length - offset, reason: r.reason });
          break;
        }
        report.records++;
        const m = r.message;
        if ((lastSeq.get(m.stream) ?? 0) < m.seq) lastSeq.set(m.stream, m.seq);
        offset = r.next;
      }
    }
    // Every segment found is sealed now (a new one starts): remember them before anything can remove them.
    Spool.writeState(dir, lastNumber, lastSeq);
    return new Spool(dir, opts, report, lastSeq, lastNumber);
  }

  /** Writes STATE.json for the segments sealed so far; a failure is logged and counted, never thrown. */
  private saveState(when: string): void {
    try {
      Spool.writeState(this.dir, this.segmentNumber, this.lastSeq);
    } catch (err) {
      this.stats.writeErrors++;
      this.opts.logger.error(`spool: could not write STATE.json ${when}`, { segment: this.segment, error: err });
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
    const fd = openSync(tmp, "w");
    writeSync(fd, JSON.stringify({ last_segment: lastSegment, last_seq: Object.fromEntries(lastSeq) }));
    fdatasyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(dir, STATE_FILE));
    const dfd = openSync(dir, "r");
    fsyncSync(dfd);
    closeSync(dfd);
  }

  /** The segment files of a spool folder, oldest first. */
  static segments(dir: string): string[] {
    return readdirSync(dir).filter((f) => SEGMENT.test(f)).sort();
  }

  /** Every message in a segment file, in order (stops at the first bad record; what is left is pushed onto `damage`). */
  static *read(path: string, damage?: SegmentDamage[]): Generator<Message> {
    const buf = readFileSync(path);
    let offset = 0;
    while (offset < buf.length) {
      const r = decodeRecord(buf, offset);
      if (!r.ok) return void damage?.push({ offset, bytes: buf.length - offset, reason: r.reason });
      yield r.message;
      offset = r.next;
    }
  }

  /** The segment being written now. */
  get current(): string {
    return this.segment;
  }

  /** A hub sink: queues the message for this turn's write. Never blocks on disk. */
  append(m: Message): void {
    if (this.closed) return;
    const bound = recordBound(m);
    if (this.used + bound > this.batch.length) this.grow(this.used + bound);
    this.used = encodeRecordInto(this.batch, this.used, m);
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
   * when a write or fsync since the call failed (disk full, I/O error).
   */
  durable(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, errorsBefore: this.stats.writeErrors });
      this.flush();
      this.sync();
    });
  }

  private wake(waiters: Spool["waiters"]): void {
    for (const w of waiters) {
      if (this.stats.writeErrors > w.errorsBefore) w.reject(new Error(`the log could not write it: ${this.lastError}`));
      else w.resolve();
    }
  }

  /** Writes what is pending: one write for the whole batch. */
  flush(): void {
    this.flushScheduled = false;
    if (this.used === 0) return;
    const batch = this.batch.subarray(0, this.used);
    this.used = 0;
    // After a flood turn, give back a grown buffer (once this write is done with it).
    const shrink = this.batch.length > 8 * 1024 * 1024;
    try {
      let written = 0;
      while (written < batch.length) written += writeSync(this.fd, batch, written);
      this.stats.writes++;
      this.stats.bytes += batch.length;
      this.segmentSize += batch.length;
      this.unsynced = true;
      this.armSync();
    } catch (err) {
      this.stats.writeErrors++;
      this.lastError = (err as Error).message;
      this.opts.logger.error("spool write failed", { segment: this.segment, error: err });
      // Cut off whatever part of the batch did get written, so no torn record sits mid-segment.
      try { ftruncateSync(this.fd, this.segmentSize); } catch { /* recovery cuts it at the next start */ }
      this.wake(this.waiters.splice(0));
    }
    if (shrink) this.batch = Buffer.allocUnsafe(1024 * 1024);
    if (this.segmentSize >= this.opts.segmentBytes || (this.segmentSize > 0 && Date.now() - this.segmentOpenedAt >= this.opts.segmentSeconds * 1000)) {
      try {
        this.roll();
      } catch (err) {
        this.opts.logger.error("spool could not start a new segment; writing on in the current one", { segment: this.segment, error: err });
      }
    }
  }

  /** Flushes, fsyncs and closes the spool. */
  close(): void {
    if (this.closed) return;
    this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.closed = true;
    fdatasyncSync(this.fd);
    closeSync(this.fd);
    // The next open starts a new segment: this one counts as sealed.
    this.saveState("at close");
    this.wake(this.waiters.splice(0));
  }

  /** Starts an fsync (off the event loop) if anything is unsynced; wakes durable() waiters after it. */
  private sync(): void {
    if (this.syncing || this.closed) return;
    if (!this.unsynced) {
      this.wake(this.waiters.splice(0));
      return;
    }
    const waiting = this.waiters.splice(0);
    this.unsynced = false;
    this.syncing = true;
    fdatasync(this.fd, (err) => {
      this.syncing = false;
      this.stats.fsyncs++;
      if (err) {
        this.stats.writeErrors++;
        this.lastError = `fsync: ${err.message}`;
        this.opts.logger.error("spool fsync failed", { segment: this.segment, error: err });
      }
      this.wake(waiting);
      if (this.waiters.length > 0) this.sync();
      else if (this.unsynced) this.armSync(); // written while this fsync ran
    });
  }

  /** Schedules an fsync within fsyncMs (once: a timer already armed covers this write too). */
  private armSync(): void {
    if (this.closed) return;
    this.timer ??= setTimeout(() => { this.timer = null; this.sync(); }, Math.max(10, this.opts.fsyncMs));
  }

  /** Makes room for at least `bytes` in the batch buffer, keeping what is in it. */
  private grow(bytes: number): void {
    const next = Buffer.allocUnsafe(Math.max(bytes, this.batch.length * 2));
    this.batch.copy(next, 0, 0, this.used);
    this.batch = next;
  }

  /** Seals the current segment (fsynced) and starts the next. */
  private roll(): void {
    // Open the next segment first: if that fails, the current one stays in use.
    const nextPath = this.path(this.segmentNumber + 1);
    const nextFd = openSync(nextPath, "a");
    fdatasyncSync(this.fd);
    closeSync(this.fd);
    // Sealed: from here compaction may take it, so the state covers it first.
    this.saveState("when sealing a segment");
    this.unsynced = false;
    this.segmentNumber++;
    this.segment = nextPath;
    this.fd = nextFd;
    this.segmentSize = fstatSync(this.fd).size;
    this.segmentOpenedAt = Date.now();
    this.enforceRetention();
  }

  /**
   * Removes sealed segments, oldest first, that are older than the retention age
   * or beyond the retention size (the segment being written is never removed).
   * Returns the files removed.
   */
  enforceRetention(now = Date.now()): string[] {
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
