import { connect, headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { PublishError, type Hub } from "../hub/hub.ts";
import { STATUS_SUBJECT, streamSubject, subjectStream } from "./subjects.ts";

/** Origins of messages that came from the cluster start with this: `nats:<node>`. They are never logged here and never published again. */
export const CLUSTER_ORIGIN_PREFIX = "nats:";

/** Whether a message came from another node through NATS. */
export const fromCluster = (m: Message): boolean => m.origin.startsWith(CLUSTER_ORIGIN_PREFIX);

/** Headers of a stream message on NATS. */
export const HEADER = { node: "Sy-Node", run: "Sy-Run", seq: "Sy-Seq", ts: "Sy-Ts", type: "Sy-Type" } as const;

/** Why an incoming NATS message was dropped (counted per reason, listed from 0). */
export const DROP_REASONS = ["bad_subject", "bad_headers", "bad_payload", "too_large", "duplicate", "same_node_id", "refused"] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** A server address as shown (dashboard, status replies, alerts): any user and password in it replaced by `***`. */
export const shownServer = (url: string): string => url.replace(/\/\/[^/@]*@/, "//***@");

/** Messages (bytes) kept while NATS is unreachable, published in order once it is back; what does not fit is dropped and counted. */
export const DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * What a message waiting in the buffer costs beyond its payload (its entry, subject and numbers),
 * counted against the buffer's bytes, so many small messages cannot hold more memory than the
 * bound says (1-byte messages cost about 2 KB each when every entry held its NATS headers).
 */
export const PENDING_ENTRY_BYTES = 256;

/** How often interest is brought up to date (and the disconnect alert judged). */
const SYNC_MS = 200;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** What a node id in a message's headers or a status reply may be (the rule of --node-id). */
export const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Most nodes remembered as seen (the least recently heard of goes first), and how long one unheard of is remembered. */
export const NODES_SEEN_MAX = 1000;
export const NODE_FORGOTTEN_MS = 3_600_000;

/**
 * The wait before reconnect attempt `attempt` (0 first): `baseMs` doubling up to
 * `maxMs`, then times a random factor from 0.5 to 1.5, so nodes that lost the
 * same server do not all come back at the same instant.
 */
export function reconnectDelay(attempt: number, b: { baseMs: number; maxMs: number }, random = Math.random): number {
  return Math.round(Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 16)) * (0.5 + random()));
}

/** What a ClusterLink needs: the servers, this node, its hub, and what it reads live. */
export interface ClusterLinkOptions {
  servers: string[];
  nodeId: string;
  hub: Hub;
  logger: Logger;
  /** The NATS subjects this node has local interest in now (see interestSubjects). */
  interest: () => Set<string>;
  /** This node's state, answered on the status subject (see nodeStatus). */
  status: () => unknown;
  /** Largest message accepted from another node (the setting max_message_bytes). */
  maxMessageBytes: () => number;
  bufferBytes?: number;
  /** Reconnect backoff: first wait and cap, ms (jittered ±50 %). */
  reconnect?: { baseMs: number; maxMs: number };
  /** Told when the connection has been down for `alertAfterMs` (with since and the last error), and when it is back (null). */
  onDown?: (down: { since: number; error: string | null } | null) => void;
  alertAfterMs?: number;
}

/** Counters of the link, for /metrics and the dashboard. */
export interface ClusterCounters {
  published: number;
  publishedBytes: number;
  received: number;
  receivedBytes: number;
  buffered: number;
  bufferDropped: number;
  publishErrors: number;
  reconnects: number;
  dropped: Record<DropReason, number>;
}

/**
 * A node's link to the NATS cluster: the bridge between the local hub and
 * NATS. Messages that entered this node (any origin but `nats:`) are published
 * on their stream's subject once delivered (after the log has them); messages
 * from NATS are published into the hub with origin `nats:<node>` and never go
 * back out. The link subscribes only to the subjects of streams with local
 * interest. Nothing here ever blocks or throws into the hub: while NATS is
 * unreachable messages wait in a bounded buffer and what overflows is counted.
 */
export class ClusterLink {
  private nc: NatsConnection | null = null;
  private connected = false;
  private closed = false;
  /** When the connection was last lost (or the first attempt began); 0 while connected. */
  private downSince = Date.now();
  private lastError: string | null = null;
  private alerted = false;
  private attempts = 0;
  private server: string | null = null;
  private readonly subs = new Map<string, Subscription>();
  /** Messages waiting for NATS; their headers are made when they are sent (see PENDING_ENTRY_BYTES). */
  private pending: { subject: string; data: Uint8Array | string; seq: number; ts: number; size: number }[] = [];
  private pendingBytes = 0;
  /** Highest origin seq seen per origin node run and stream, to deliver a message once when two subscriptions match it. */
  private readonly lastSeen = new Map<string, number>();
  /** Nodes heard of (messages, status replies): id → last time, ms, least recent first; bounded (see seen()). */
  readonly nodesSeen = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | null = null;
  /** This process's run: a node that restarts starts a new run, so its seqs are judged afresh. */
  private readonly run = crypto.randomUUID().slice(0, 8);
  readonly counters: ClusterCounters = { published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, buffered: 0, bufferDropped: 0, publishErrors: 0, reconnects: 0, dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number> };

  constructor(private readonly opts: ClusterLinkOptions) {}

  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** Connects in the background (retrying for ever with backoff) and starts following interest. */
  start(): void {
    this.timer = setInterval(() => this.sync(), SYNC_MS);
    void this.connectLoop();
  }

  /** The connection's state for the dashboard and /metrics. */
  state() {
    return {
      node: this.opts.nodeId,
      servers: this.opts.servers.map(shownServer),
      connected: this.connected,
      server: this.connected && this.server ? shownServer(this.server) : null,
      down_since: this.connected ? null : new Date(this.downSince).toISOString(),
      last_error: this.lastError,
      subjects: this.subs.size,
      pending_bytes: this.pendingBytes,
      ...this.counters,
    };
  }

  /** The NATS subjects subscribed to now, sorted. */
  subscribed(): string[] {
    return [...this.subs.keys()].sort();
  }

  /** Hub delivery sink: publishes a message that entered this node. Never throws. */
  deliver(m: Message): void {
    if (fromCluster(m) || this.closed) return;
    const subject = streamSubject(m.stream);
    if (this.connected && this.pending.length === 0) {
      this.send(subject, m.data, this.headersOf(m.seq, m.ts, m.data), m.size);
      return;
    }
    const bufferBytes = this.opts.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    const cost = m.size + PENDING_ENTRY_BYTES;
    if (this.pendingBytes + cost > bufferBytes) {
      this.counters.bufferDropped++;
      return;
    }
    this.pending.push({ subject, data: m.data, seq: m.seq, ts: m.ts, size: m.size });
    this.pendingBytes += cost;
    this.counters.buffered++;
  }

  /** The NATS headers of a message that entered this node. */
  private headersOf(seq: number, ts: number, data: Uint8Array | string): ReturnType<typeof headers> {
    const hdr = headers();
    hdr.set(HEADER.node, this.opts.nodeId);
    hdr.set(HEADER.run, this.run);
    hdr.set(HEADER.seq, String(seq));
    hdr.set(HEADER.ts, String(ts));
    hdr.set(HEADER.type, typeof data === "string" ? "text" : "binary");
    return hdr;
  }

  /**
   * Bytes handed to the NATS client and not yet taken by the server: the
   * client's own buffer and its socket's. The client (3.4.0) exposes neither
   * in its types, so they are read defensively (0 when absent).
   */
  private unsent(): number {
    const inner = this.nc as unknown as { protocol?: { outbound?: { size?(): number }; transport?: { socket?: { writableLength?: number } } } } | null;
    const p = inner?.protocol;
    return (p?.outbound?.size?.() ?? 0) + (p?.transport?.socket?.writableLength ?? 0);
  }

  private send(subject: string, data: Uint8Array | string, hdr: ReturnType<typeof headers>, size: number): void {
    // A server that stops reading (hung, or starved) must not make this node buffer without end: past the
    // buffer's size, messages are dropped from the cluster path and counted, as while disconnected.
    if (this.unsent() + size > (this.opts.bufferBytes ?? DEFAULT_BUFFER_BYTES)) {
      this.counters.bufferDropped++;
      return;
    }
    try {
      this.nc!.publish(subject, data, { headers: hdr });
      this.counters.published++;
      this.counters.publishedBytes += size;
    } catch (err) {
      // Too large for the server's max_payload, or the connection closed under us: counted, never thrown into the hub.
      this.counters.publishErrors++;
      if (this.counters.publishErrors <= 10 || this.counters.publishErrors % 1000 === 0) this.opts.logger.warn("cluster: a message could not be published to NATS", { subject, error: err, count: this.counters.publishErrors });
    }
  }

  private flushPending(): void {
    const pending = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const p of pending) this.send(p.subject, p.data, this.headersOf(p.seq, p.ts, p.data), p.size);
  }

  /** Asks every other node for its state: the replies that come within `waitMs`. Empty when not connected. */
  async requestStatus(waitMs: number): Promise<unknown[]> {
    if (!this.nc || !this.connected) return [];
    const out: unknown[] = [];
    try {
      const replies = await this.nc.requestMany(STATUS_SUBJECT, "", { strategy: "timer", maxWait: waitMs });
      for await (const r of replies) {
        try {
          out.push(r.json());
        } catch {
          // A reply that is not JSON is not a node's: left out.
        }
      }
    } catch (err) {
      this.opts.logger.debug("cluster: status request failed", { error: err });
    }
    return out;
  }

  /** Closes the connection (pending messages are dropped: the process is stopping). */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const nc = this.nc;
    this.nc = null;
    this.connected = false;
    if (nc) await nc.close().catch(() => {});
  }

  private async connectLoop(): Promise<void> {
    const backoff = this.opts.reconnect ?? { baseMs: 250, maxMs: 5000 };
    const delay = () => reconnectDelay(this.attempts++, backoff);
    let nc: NatsConnection;
    for (;;) {
      try {
        nc = await connect({
          servers: this.opts.servers, name: `switchyard ${this.opts.nodeId}`, noEcho: true,
          maxReconnectAttempts: -1, reconnectDelayHandler: delay, pingInterval: 5000, maxPingOut: 2,
        });
        break;
      } catch (err) {
        // Nothing reachable at start: try again with the same backoff as a reconnect.
        this.lastError = (err as Error).message;
        if (this.closed) return;
        await Bun.sleep(delay());
        if (this.closed) return;
      }
    }
    if (this.closed) {
      await nc.close().catch(() => {});
      return;
    }
    this.nc = nc;
    this.up();
    nc.subscribe(STATUS_SUBJECT, { callback: (_err, msg) => this.answerStatus(msg) });
    void nc.closed().then((err) => {
      if (err) this.lastError = err.message;
    });
    for await (const s of nc.status()) {
      if (this.closed) break;
      if (s.type === "disconnect") this.down(`disconnected from ${s.server}`);
      else if (s.type === "reconnect") {
        this.counters.reconnects++;
        this.up();
      } else if (s.type === "error") this.lastError = String(s.error?.message ?? s.error);
    }
  }

  private up(): void {
    this.connected = true;
    this.attempts = 0;
    this.server = this.nc?.getServer() ?? null;
    this.opts.logger.info("cluster: connected to NATS", { server: this.server, node: this.opts.nodeId });
    this.flushPending();
    this.sync();
    if (this.alerted) {
      this.alerted = false;
      this.opts.onDown?.(null);
    }
  }

  private down(why: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.downSince = Date.now();
    this.lastError = why;
    this.opts.logger.warn("cluster: lost the connection to NATS; reconnecting", { reason: why });
  }

  private answerStatus(msg: Msg): void {
    try {
      msg.respond(JSON.stringify(this.opts.status()));
    } catch (err) {
      this.opts.logger.debug("cluster: status reply failed", { error: err });
    }
  }

  /** Brings subscriptions in line with local interest, and judges the disconnect alert. */
  private sync(): void {
    if (!this.connected && !this.alerted && Date.now() - this.downSince >= (this.opts.alertAfterMs ?? 5000) && !this.closed) {
      this.alerted = true;
      this.opts.onDown?.({ since: this.downSince, error: this.lastError });
    }
    const nc = this.nc;
    if (!nc || this.closed) return;
    let want: Set<string>;
    try {
      want = this.opts.interest();
    } catch (err) {
      this.opts.logger.error("cluster: interest could not be computed", { error: err });
      return;
    }
    for (const [subject, sub] of this.subs) {
      if (want.has(subject)) continue;
      sub.unsubscribe();
      this.subs.delete(subject);
    }
    for (const subject of want) {
      if (this.subs.has(subject)) continue;
      try {
        this.subs.set(subject, nc.subscribe(subject, { callback: (_err, msg) => this.receive(msg) }));
      } catch (err) {
        this.opts.logger.warn("cluster: could not subscribe", { subject, error: err });
      }
    }
  }

  /**
   * Notes that `node` was heard of now. The map stays bounded whatever ids
   * arrive over NATS: at most NODES_SEEN_MAX, the least recently heard of going
   * first, and a node not heard of for NODE_FORGOTTEN_MS is forgotten (no longer
   * listed as missing), so a node taken out of the cluster does not stay missing for ever.
   */
  seen(node: string, now = Date.now()): void {
    if (!NODE_ID.test(node)) return;
    this.nodesSeen.delete(node);
    this.nodesSeen.set(node, now);
    for (const [id, at] of this.nodesSeen) {
      if (this.nodesSeen.size <= NODES_SEEN_MAX && now - at < NODE_FORGOTTEN_MS) break;
      this.nodesSeen.delete(id);
    }
  }

  private drop(reason: DropReason, subject: string, detail: string): void {
    const n = ++this.counters.dropped[reason];
    if (n <= 10 || n % 1000 === 0) this.opts.logger.warn("cluster: dropped a message from NATS", { reason, subject: subject.slice(0, 300), detail, count: n });
  }

  /** A message from NATS: checked, deduplicated, and published into the local hub as `nats:<node>`. */
  private receive(msg: Msg): void {
    try {
      const stream = subjectStream(msg.subject);
      if (stream === null) return this.drop("bad_subject", msg.subject, "the subject is not one Switchyard gives a valid stream name");
      const h = msg.headers;
      const node = h?.get(HEADER.node) ?? "";
      const run = h?.get(HEADER.run) ?? "";
      const seq = Number(h?.get(HEADER.seq) ?? "");
      const type = h?.get(HEADER.type) ?? "";
      if (!NODE_ID.test(node) || !/^[A-Za-z0-9-]{1,64}$/.test(run) || !Number.isSafeInteger(seq) || seq < 1 || (type !== "text" && type !== "binary")) {
        return this.drop("bad_headers", msg.subject, `headers ${HEADER.node}, ${HEADER.run}, ${HEADER.seq} (a whole number from 1) and ${HEADER.type} (text or binary) are required`);
      }
      if (node === this.opts.nodeId) return this.drop("same_node_id", msg.subject, `another node uses this node's id ${node}; give each node its own --node-id`);
      const size = msg.data.byteLength;
      const limit = this.opts.maxMessageBytes();
      if (size > limit) return this.drop("too_large", msg.subject, `${size} bytes is more than max_message_bytes (${limit})`);
      const key = `${node}\u0000${run}\u0000${stream}`;
      const last = this.lastSeen.get(key) ?? 0;
      if (seq <= last) return this.drop("duplicate", msg.subject, `seq ${seq} of ${node} already delivered`);
      this.lastSeen.delete(key);
      this.lastSeen.set(key, seq);
      // Bounded: the oldest keys go first (a stream not heard of for long is judged afresh).
      if (this.lastSeen.size > 100_000) this.lastSeen.delete(this.lastSeen.keys().next().value!);
      let data: string | Uint8Array;
      if (type === "text") {
        try {
          data = utf8.decode(msg.data);
        } catch {
          return this.drop("bad_payload", msg.subject, "a text message that is not UTF-8");
        }
      } else data = msg.data.slice();
      this.seen(node);
      this.counters.received++;
      this.counters.receivedBytes += size;
      this.opts.hub.publish(stream, data, `${CLUSTER_ORIGIN_PREFIX}${node}`);
    } catch (err) {
      if (err instanceof PublishError) return this.drop("refused", msg.subject, err.message);
      this.drop("refused", msg.subject, (err as Error).message);
    }
  }
}
