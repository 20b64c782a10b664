import type { ServerWebSocket } from "bun";
import type { Settings } from "../config/settings.ts";
import type { Connection } from "../hub/connection.ts";
import { PublishError, type Hub } from "../hub/hub.ts";
import { LogWriteError } from "../log/spool.ts";

/** What acknowledged publishing needs of the durable log. */
export interface AckLog {
  /** A wait for the group commit of records up to `cover(n)` (Spool.commitWaiter). */
  commitWaiter(): { cover(target: number): void; done: Promise<void> };
  /** Records appended to the log since it opened (Spool.stats.appended). */
  appended(): number;
  /** Whether a stream's messages go to the log (not excluded by log_exclude). */
  logs(stream: string): boolean;
}

/** Most bytes of a client message id (`?ack=id`). */
export const MAX_ID_BYTES = 128;
/** Most ids the de-duplication window remembers, over all streams. */
export const MAX_DEDUP_IDS = 100_000;

/** One message of an acknowledged publisher, waiting for its acknowledgement. */
interface Pending {
  seq: number;
  id?: string;
  /** A resend of an id seen within the window: acknowledged with the first one's seq, not stored again. */
  dup?: boolean;
  logged: boolean;
}

/** The messages of one event-loop turn, waiting for the group commit that holds them. */
interface Round {
  items: Pending[];
  commit: { cover(target: number): void; done: Promise<void> };
}

/** The acknowledgement state of one publisher connection. */
interface AckState {
  ids: boolean;
  /** This turn's round, sealed at the end of the turn. */
  forming: Round | null;
  /** The sealed rounds' acknowledgements, in order. */
  chain: Promise<void>;
}

const states = new WeakMap<Connection, AckState>();

/**
 * Reads `?ack=` of a websocket upgrade: `1` (acknowledge by seq) or `id`
 * (text frames are `{"id","data"}` or `{"id","base64"}` envelopes, acknowledged
 * by id too, resends de-duplicated). Returns a refusal reason for any other value.
 */
export function requestAcks(c: Connection, value: string | null): string | null {
  if (value === null) return null;
  if (value !== "1" && value !== "id") return `ack=${value.slice(0, 20)} is not known: use ack=1 (acknowledge by seq) or ack=id (messages are {"id","data"} envelopes)`;
  states.set(c, { ids: value === "id", forming: null, chain: Promise.resolve() });
  return null;
}

/** True when the connection asked for acknowledgements. */
export function acknowledged(c: Connection): boolean {
  return states.has(c);
}

/**
 * The de-duplication window: client id per stream -> the seq it was given,
 * for `publish_dedup_seconds`, at most MAX_DEDUP_IDS ids (oldest forgotten
 * first). In memory: a restart forgets it.
 */
export class DedupWindow {
  private readonly seen = new Map<string, { seq: number; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The seq an id was given within the last `seconds`, if any. */
  get(stream: string, id: string, seconds: number): number | undefined {
    const e = this.seen.get(`${stream}\n${id}`);
    return e && this.now() - e.at <= seconds * 1000 ? e.seq : undefined;
  }

  remember(stream: string, id: string, seq: number, seconds: number): void {
    const key = `${stream}\n${id}`;
    this.seen.delete(key);
    const now = this.now();
    this.seen.set(key, { seq, at: now });
    for (const [k, e] of this.seen) {
      if (this.seen.size <= MAX_DEDUP_IDS && now - e.at <= seconds * 1000) break;
      this.seen.delete(k);
    }
  }

  /** Forgets an id whose message turned out not to be stored, so a resend is stored. */
  forget(stream: string, id: string, seq: number): void {
    const key = `${stream}\n${id}`;
    if (this.seen.get(key)?.seq === seq) this.seen.delete(key);
  }

  get size(): number {
    return this.seen.size;
  }
}

/** What publishAcked needs. */
export interface AckDeps {
  hub: Hub;
  settings: () => Settings;
  log: AckLog;
  dedup: DedupWindow;
}

/** Close codes used here (as websocket.ts's CLOSE). */
const POLICY = 1008;
const TOO_BIG = 1009;
const TRY_AGAIN = 1013;

const closeReason = (text: string) => (Buffer.byteLength(text) <= 123 ? text : Buffer.from(text).subarray(0, 120).toString().replace(/\uFFFD$/, "") + "...");

function close(ws: ServerWebSocket<Connection>, code: number, text: string): void {
  ws.data.closing = true;
  ws.close(code, closeReason(text));
}

/** The payload and client id of a `?ack=id` envelope, or a reason it is not one. */
function openEnvelope(message: string | Buffer): { id: string; data: string | Uint8Array } | string {
  const rule = `with ?ack=id every message is a text frame {"id":"…","data":"text"} or {"id":"…","base64":"…"} (id: 1 to ${MAX_ID_BYTES} bytes)`;
  if (typeof message !== "string") return `a binary frame: ${rule}`;
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    return `not JSON: ${rule}`;
  }
  if (typeof v !== "object" || v === null) return rule;
  const { id, data, base64 } = v as Record<string, unknown>;
  if (typeof id !== "string" || id.length === 0 || Buffer.byteLength(id) > MAX_ID_BYTES) return `bad id: ${rule}`;
  if (typeof data === "string" && base64 === undefined) return { id, data };
  if (typeof base64 === "string" && data === undefined) return { id, data: Buffer.from(base64, "base64") };
  return rule;
}

/**
 * Publishes a message of a connection that asked for acknowledgements (`?ack=`)
 * and queues it for its acknowledgement, sent once the log has fsynced it.
 */
export function publishAcked(ws: ServerWebSocket<Connection>, message: string | Buffer, deps: AckDeps): void {
  const c = ws.data;
  const state = states.get(c)!;
  let data: string | Uint8Array = message;
  let id: string | undefined;
  if (state.ids) {
    const opened = openEnvelope(message);
    if (typeof opened === "string") return close(ws, POLICY, opened);
    ({ id, data } = opened);
    const window = deps.settings().publish_dedup_seconds;
    const seq = window > 0 ? deps.dedup.get(c.stream, id, window) : undefined;
    if (seq !== undefined) {
      // Acknowledged with the first one's seq once the log has it (this round's commit covers everything appended so far).
      (state.forming ?? openRound(ws, state, deps)).items.push({ seq, id, dup: true, logged: deps.log.logs(c.stream) });
      return;
    }
  }
  const round = state.forming ?? openRound(ws, state, deps);
  const logged = deps.log.logs(c.stream);
  // Cover the record about to be appended before it is: a write that fails at once then fails this round too.
  if (logged) round.commit.cover(deps.log.appended() + 1);
  let seq: number;
  try {
    const first = c.published === 0;
    seq = deps.hub.publish(c.stream, data, c.origin, c).seq;
    if (first) deps.hub.notePublisher(c);
  } catch (err) {
    if (logged) round.commit.cover(deps.log.appended());
    if (!(err instanceof PublishError)) throw err;
    return close(ws, err.code === "too_large" ? TOO_BIG : err.code === "log_unavailable" ? TRY_AGAIN : POLICY, err.message);
  }
  const window = deps.settings().publish_dedup_seconds;
  if (id !== undefined && window > 0) deps.dedup.remember(c.stream, id, seq, window);
  round.items.push({ seq, id, logged });
}

/** A round for this turn's messages, sealed (and its acknowledgement queued) at the end of the turn. */
function openRound(ws: ServerWebSocket<Connection>, state: AckState, deps: AckDeps): Round {
  const round: Round = { items: [], commit: deps.log.commitWaiter() };
  state.forming = round;
  setImmediate(() => {
    state.forming = null;
    state.chain = state.chain.then(() => settleRound(ws, round, state.ids, deps)).catch(() => {
      // Not expected (settleRound handles a failed commit); the publisher must not wait for acks that will not come.
      if (!ws.data.closing) close(ws, 1011, "internal error while acknowledging; send what was not acked again");
    });
  });
  return round;
}

/**
 * Waits for a round's group commit (write and fsync), then sends one `ack`
 * frame for its logged messages; messages of a log_exclude stream get an
 * `accepted` frame with `"stored":false` instead, never an `ack`.
 */
async function settleRound(ws: ServerWebSocket<Connection>, round: Round, ids: boolean, deps: AckDeps): Promise<void> {
  const logged = round.items.filter((p) => p.logged);
  const unlogged = logged.length === round.items.length ? [] : round.items.filter((p) => !p.logged);
  try {
    await round.commit.done;
  } catch (err) {
    if (logged.length > 0) return failed(ws, logged, err as Error, deps);
  }
  if (unlogged.length > 0) send(ws, "accepted", unlogged, ids, deps, { stored: false, reason: "the stream matches log_exclude: delivered, never stored" });
  if (logged.length > 0) send(ws, "ack", logged, ids, deps);
}

/** Sends an acknowledgement frame; a publisher that does not read them (past backpressure_limit_bytes waiting) is closed with 1013. */
function send(ws: ServerWebSocket<Connection>, kind: "ack" | "accepted", batch: Pending[], ids: boolean, deps: AckDeps, extra: Record<string, unknown> = {}): void {
  if (ws.data.closing || ws.readyState !== 1) return;
  let seq = 0;
  for (const p of batch) if (p.seq > seq) seq = p.seq;
  const body: Record<string, unknown> = { seq, count: batch.length, ...extra };
  if (ids) {
    body.ids = batch.map((p) => p.id);
    body.seqs = batch.map((p) => p.seq);
    const dups = batch.filter((p) => p.dup).map((p) => p.id);
    if (dups.length > 0) body.duplicates = dups;
  }
  const sent = ws.send(JSON.stringify({ [kind]: body }));
  const limit = deps.settings().backpressure_limit_bytes;
  const waiting = ws.getBufferedAmount();
  if (sent === 0 || waiting > limit) {
    close(ws, TRY_AGAIN, `acknowledgements not read: ${waiting} bytes waiting (limit ${limit}); resend what was not acked`);
  }
}

/**
 * The log could not store (or could not fsync) messages of this round: the
 * publisher gets an `error` frame naming them, then 1013. Their ids leave the
 * de-duplication window, so sending them again stores them.
 */
function failed(ws: ServerWebSocket<Connection>, batch: Pending[], err: Error, deps: AckDeps): void {
  for (const p of batch) if (p.id !== undefined) deps.dedup.forget(ws.data.stream, p.id, p.seq);
  if (ws.data.closing || ws.readyState !== 1) return;
  const stored = err instanceof LogWriteError ? err.stored : "unknown";
  const body: Record<string, unknown> = { message: `not acknowledged: ${err.message}`, stored, count: batch.length, seqs: batch.map((p) => p.seq) };
  if (batch.some((p) => p.id !== undefined)) body.ids = batch.map((p) => p.id);
  ws.send(JSON.stringify({ error: body }));
  close(ws, TRY_AGAIN, `the log could not ${stored === "no" ? "store" : "fsync"} messages; send what was not acked again`);
}
