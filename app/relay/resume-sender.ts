import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import type { Hub } from "../hub/hub.ts";
import { readLogPage } from "../sinks/history.ts";
import { Follower, type FollowDeps, type FollowTarget } from "../sinks/replay.ts";
import type { CatchupRate } from "./catchup-rate.ts";
import type { Cursor, DestinationCursors } from "./cursors.ts";
import type { Recorder } from "./recorder.ts";
import { helloFrame, linkFrame, RELAY_PROTOCOL, RESUME_OFFER } from "./relay-link.ts";
import type { DestinationRule } from "./rule.ts";
import type { DestinationStatus } from "./status.ts";

/** What a store-and-forward destination needs beyond a plain one. */
export interface ResumeDeps {
  cursors: DestinationCursors;
  /** Memory, last seqs and the log reader (the followers' deps, with the destination buffer as the socket limit). */
  follow: FollowDeps;
  rate: CatchupRate;
  /** This box's node key (a secret kept in its data dir): how a remote Switchyard knows what it has from here. */
  nodeKey: string;
}

/** How the remote takes the backlog: a Switchyard says what it holds and acknowledges; anything else cannot. */
export type ResumeMode = "switchyard" | "at-least-once";

/** How long a Switchyard remote may take to answer the hello. */
const HELLO_TIMEOUT_MS = 30_000;
/** How often a link to a remote that cannot acknowledge pings it, to learn what it has read. */
const CONFIRM_PING_MS = 1000;
/** How often an unknown backlog age may be looked up in the log. */
const AGE_PROBE_MS = 10_000;

/**
 * The store-and-forward half of a websocket destination with `"resume": true`.
 * Nothing waits in memory while the link is down: the log holds the messages
 * and the cursor (in the settings store) says where the remote is. When a link
 * opens, a Follower (the subscribers' catch-up: memory, then the log page by
 * page, pulled only as the socket drains) sends from the cursor in order, then
 * live. Towards a Switchyard (subprotocol RELAY_PROTOCOL) the remote says what
 * it holds and acknowledges after fsync, and the cursor is its acknowledgement;
 * towards anything else it is the last message written before a ping the remote
 * answered (at least once: what was not confirmed when the link broke is sent again).
 */
export class ResumeSender {
  private cursor: Cursor;
  private ws: WebSocket | null = null;
  private mode: ResumeMode | null = null;
  private follower: Follower | null = null;
  private helloTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private rateTimer: ReturnType<typeof setTimeout> | null = null;
  /** At-least-once mode: the last seq handed to the socket (or passed over: it came from the remote). */
  private lastWritten = 0;
  /** Backlog messages sent (since this destination started), and seqs the log no longer had. */
  private caughtUp = 0;
  private skipped = 0;
  /** The ts of the first message after `afterSeq` (what the oldest waiting message is), when known. */
  private oldest: { afterSeq: number; ts: number } | null = null;
  private probeAt = 0;

  constructor(private readonly rule: DestinationRule, private readonly origin: string, private readonly deps: ResumeDeps, private readonly hub: Hub,
    private readonly status: DestinationStatus, private readonly logger: Logger, private readonly recorder: Recorder | null) {
    const stored = deps.cursors.get(rule.id);
    if (stored && stored.stream === rule.stream) {
      this.cursor = stored;
    } else {
      // A new rule starts at the live edge: the stream's history before it is not the remote's business.
      const last = hub.lastDeliveredSeq(rule.stream);
      this.cursor = { stream: rule.stream, startSeq: last, seq: last };
      deps.cursors.create(rule.id, this.cursor);
    }
  }

  /** The subprotocols to offer when dialling. */
  static readonly protocols = RESUME_OFFER;

  /** A link opened: find out what the remote holds (a Switchyard), or start from the cursor. */
  opened(ws: WebSocket, fail: (why: string) => void): void {
    this.ws = ws;
    if (ws.protocol === RELAY_PROTOCOL) {
      this.mode = "switchyard";
      ws.send(helloFrame(this.deps.nodeKey, this.rule.stream));
      this.helloTimer = setTimeout(() => fail(`the remote chose ${RELAY_PROTOCOL} but did not say what it holds within ${HELLO_TIMEOUT_MS / 1000} s`), HELLO_TIMEOUT_MS);
      return;
    }
    this.mode = "at-least-once";
    this.lastWritten = this.cursor.seq;
    this.pingTimer = setInterval(() => this.confirm(ws), CONFIRM_PING_MS);
    this.follow(this.cursor.seq, fail);
  }

  /**
   * A frame from the remote. True when it was the link's own (an answer or an
   * acknowledgement from a Switchyard); false for a message of the remote's
   * stream, which the destination publishes locally as ever.
   */
  frame(data: string | ArrayBuffer, fail: (why: string) => void): boolean {
    if (this.mode !== "switchyard") return false;
    if (typeof data !== "string") return true; // a relay link carries no messages back
    let v: { relay?: { after?: unknown }; ack?: { ids?: unknown }; error?: { message?: unknown } };
    try { v = JSON.parse(data); } catch { return true; }
    if (v.relay && this.follower === null) {
      const after = v.relay.after;
      if (typeof after !== "number" || !Number.isSafeInteger(after) || after < 0) {
        fail(`the remote answered the relay hello with ${data.slice(0, 100)}; expected {"relay":{"after":N}}`);
        return true;
      }
      if (this.helloTimer) clearTimeout(this.helloTimer);
      this.helloTimer = null;
      this.taken(after);
      this.follow(after, fail);
    } else if (v.ack && Array.isArray(v.ack.ids) && v.ack.ids.length > 0) {
      this.taken(Number(v.ack.ids[v.ack.ids.length - 1]));
    } else if (v.error) {
      this.status.fail(`the remote could not store messages: ${String(v.error.message ?? "")}`);
    }
    return true;
  }

  /** A live message of the stream (the destinations' hub sink). */
  offer(m: Message): void {
    if (m.seq === this.cursor.seq + 1 && m.origin !== this.origin) this.oldest = { afterSeq: this.cursor.seq, ts: m.ts };
    this.follower?.offer(m);
  }

  /** The link closed: stop sending; the cursor stays where the remote was. */
  closed(): void {
    this.follower?.stop();
    this.follower = null;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.rateTimer) clearTimeout(this.rateTimer);
    this.helloTimer = this.pingTimer = this.rateTimer = null;
    this.ws = null;
    this.mode = null;
  }

  /** Writes the cursor now (at stop). */
  flush(): void {
    this.deps.cursors.flush();
  }

  /** Messages of the stream after the cursor (an upper bound when the log has gaps). */
  backlog(): number {
    return Math.max(0, this.hub.lastDeliveredSeq(this.rule.stream) - Math.max(this.cursor.seq, this.cursor.startSeq));
  }

  /** The status's store-and-forward part. */
  view() {
    const messages = this.backlog();
    const oldestTs = messages > 0 ? this.oldestWaiting() : null;
    return {
      // Null until the backlog can flow: not connected, or a Switchyard has not yet said what it holds.
      mode: this.follower ? this.mode : null, cursor: this.cursor.seq, catching_up: this.follower !== null && !this.follower.isLive,
      backlog_messages: messages, backlog_oldest: oldestTs === null ? null : new Date(oldestTs / 1000).toISOString(),
      backlog_age_seconds: oldestTs === null ? null : Math.max(0, Math.round((Date.now() - oldestTs / 1000) / 1000)),
      caught_up: this.caughtUp, skipped: this.skipped,
    };
  }

  /** The remote has taken everything up to `seq`. */
  private taken(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq <= this.cursor.seq) return;
    this.cursor = { ...this.cursor, seq };
    this.deps.cursors.move(this.rule.id, this.cursor);
  }

  /**
   * At-least-once: pings the remote, with the last seq written as the ping's
   * data, when something was sent since the last confirmed point. A websocket
   * reads frames in order and answers a ping with its data, so the pong proves
   * the remote read everything written before that ping.
   */
  private confirm(ws: WebSocket): void {
    if (this.lastWritten <= this.cursor.seq || ws.readyState !== WebSocket.OPEN) return;
    try { ws.ping(`c${this.lastWritten}`); } catch { /* closing */ }
  }

  /** A pong from the remote: one that answers a confirming ping moves the cursor to the seq it carries. */
  pong(data: unknown): void {
    if (this.mode !== "at-least-once" || !data) return;
    const text = Buffer.from(data as Uint8Array).toString();
    if (/^c\d{1,16}$/.test(text)) this.taken(Number(text.slice(1)));
  }

  private follow(after: number, fail: (why: string) => void): void {
    const ws = this.ws!;
    const last = this.hub.lastDeliveredSeq(this.rule.stream);
    let from = Math.max(after, this.cursor.startSeq);
    if (from > last) {
      // The remote claims more than this stream ever had here (its seqs restarted): send from the live edge.
      this.logger.warn("destination: the remote holds seqs beyond this stream's last; sending from the live edge", { id: this.rule.id, stream: this.rule.stream, remote_after: from, last_seq: last });
      from = last;
    }
    const rate = this.deps.rate;
    let follower: Follower;
    const target: FollowTarget = {
      send: (m) => {
        if (m.origin === this.origin) {
          // It came from this remote: no echo (and nothing to wait for).
          if (this.mode === "at-least-once") this.lastWritten = m.seq;
          return;
        }
        if (ws.readyState !== WebSocket.OPEN) return;
        const frame = this.mode === "switchyard" ? linkFrame(m) : m.data;
        ws.send(frame);
        if (!follower.isLive) {
          // Counted as sent: with the relay link's framing (base64 makes binary a third bigger).
          rate.take(typeof frame === "string" ? (frame === m.data ? m.size : Buffer.byteLength(frame)) : frame.byteLength);
          this.caughtUp++;
          this.oldest = { afterSeq: m.seq, ts: m.ts };
        }
        this.status.messagesOut++;
        this.status.bytesOut += m.size;
        this.recorder?.write(m);
        if (this.mode === "at-least-once") {
          this.lastWritten = m.seq;
        }
      },
      gap: (g) => {
        this.skipped += g.to - g.from + 1;
        const why = `seq ${g.from}..${g.to} of ${this.rule.stream} could not be sent: ${g.reason}`;
        this.status.fail(why);
        this.logger.warn("destination: backlog messages no longer in the log", { id: this.rule.id, stream: this.rule.stream, from: g.from, to: g.to, reason: g.reason });
        if (this.mode === "at-least-once") this.lastWritten = g.to;
        return true;
      },
      buffered: () => {
        if (follower.isLive || rate.ready()) return ws.bufferedAmount;
        // Over the catch-up rate: the follower waits; wake it when the next message may go.
        this.rateTimer ??= setTimeout(() => { this.rateTimer = null; follower.drained(); }, rate.waitMs());
        return Number.MAX_SAFE_INTEGER;
      },
      fail: (why) => fail(`the backlog could not be read: ${why}`),
    };
    follower = new Follower(this.rule.stream, { afterSeq: from }, target, this.deps.follow, `relay:${this.rule.id}`);
    this.follower = follower;
    follower.begin();
  }

  /** The receive time (µs) of the oldest message waiting, when known; looks it up in the log now and then. */
  private oldestWaiting(): number | null {
    const after = Math.max(this.cursor.seq, this.cursor.startSeq);
    const mem = this.deps.follow.recent.after(this.rule.stream, after, 1);
    if (mem && mem.length > 0) return mem[0]!.ts;
    if (this.oldest?.afterSeq !== after && Date.now() - this.probeAt > AGE_PROBE_MS && this.deps.follow.logs(this.rule.stream)) {
      this.probeAt = Date.now();
      void readLogPage(this.deps.follow.log, this.rule.stream, after, 1, { client: `relay:${this.rule.id}` })
        .then((page) => { if (page[0]) this.oldest = { afterSeq: after, ts: page[0].ts }; })
        .catch(() => {});
    }
    return this.oldest?.ts ?? null;
  }
}
