import type { ServerWebSocket } from "bun";
import type { Logger } from "../core/logger.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import type { Connection } from "../hub/connection.ts";
import { PublishError, type Hub } from "../hub/hub.ts";
import { LogWriteError } from "../log/spool.ts";
import { queryRows, type LogReaderDeps } from "../sinks/history.ts";
import type { AckLog } from "../sources/publish-acks.ts";
import { NODE_KEY, nodeIdOf, originPrefix, relayedOrigin } from "./relay-link.ts";

/** The state of one inbound relay link (a connection that chose RELAY_PROTOCOL). */
interface Link {
  /** `<node>:<stream>` once the sender said hello. */
  sender: string | null;
  /** Set once the answer `{"relay":{"after"}}` went out: messages are taken from then on. */
  ready: boolean;
  forming: Round | null;
  chain: Promise<void>;
}

/** One event-loop turn of a link's messages, waiting for the group commit that holds them. */
interface Round {
  ids: string[];
  /** The highest seq given here (0 when the round holds only resends). */
  seq: number;
  commit: { cover(target: number): void; done: Promise<void> };
}

const links = new WeakMap<Connection, Link>();

/** Marks a connection as an inbound relay link (it chose RELAY_PROTOCOL at the upgrade): it only publishes. */
export function claimRelayLink(c: Connection): void {
  links.set(c, { sender: null, ready: false, forming: null, chain: Promise.resolve() });
  c.grant = { ...c.grant, read: false };
}

/** True for an inbound relay link. */
export function isRelayLink(c: Connection): boolean {
  return links.has(c);
}

/** What the inbox needs: the hub, the log's group commit, and the log reader. */
export interface RelayInboxDeps {
  hub: Hub;
  log: AckLog;
  reader: LogReaderDeps;
  logger: Logger;
}

const POLICY = 1008;
const TOO_BIG = 1009;
const INTERNAL = 1011;
const TRY_AGAIN = 1013;

function close(ws: ServerWebSocket<Connection>, code: number, text: string): void {
  if (ws.data.closing) return;
  ws.data.closing = true;
  ws.close(code, Buffer.byteLength(text) <= 123 ? text : Buffer.from(text).subarray(0, 120).toString().replace(/\uFFFD$/, "") + "...");
}

/**
 * The receiving side of store and forward between two Switchyards. A sender
 * says who it is; the inbox answers the highest seq of that sender it holds
 * durably (from memory, or after a restart from the log, where each relayed
 * message's origin carries its sender and seq), after a group commit of
 * everything already accepted. Messages at or below what it holds are
 * resends: acknowledged, never stored twice. Each turn's messages are
 * acknowledged after the group commit (write and fsync) that holds them.
 */
export class RelayInbox {
  /** `<stream>\n<sender>` -> the highest sender seq published here (by this process, or found in the log). */
  private readonly high = new Map<string, number>();

  constructor(private readonly deps: RelayInboxDeps) {}

  /** A frame of an inbound relay link. */
  message(ws: ServerWebSocket<Connection>, message: string | Buffer): void {
    const link = links.get(ws.data)!;
    if (link.sender === null) return void this.hello(ws, link, message);
    if (!link.ready) return close(ws, POLICY, 'relay link: wait for {"relay":{"after":N}} before sending messages');
    this.take(ws, link, message);
  }

  private key(c: Connection, sender: string): string {
    return `${c.stream}\n${sender}`;
  }

  private async hello(ws: ServerWebSocket<Connection>, link: Link, message: string | Buffer): Promise<void> {
    const c = ws.data;
    const rule = 'the first frame of a relay link is {"relay":{"key":"<32 to 128 of A-Z a-z 0-9 - _>","stream":"<the sender\'s stream>"}}';
    let v: { relay?: { key?: unknown; stream?: unknown } } | null = null;
    try { v = typeof message === "string" ? JSON.parse(message) : null; } catch { /* refused below */ }
    const key = v?.relay?.key;
    const stream = v?.relay?.stream;
    if (typeof key !== "string" || !NODE_KEY.test(key) || typeof stream !== "string" || streamNameProblem(stream)) return close(ws, POLICY, rule);
    if (!this.deps.log.logs(c.stream)) return close(ws, POLICY, `stream ${c.stream} is excluded from the log (log_exclude): store and forward needs it logged`);
    // The sender is known by its key's hash: the key itself is never kept or shown.
    const sender = `${nodeIdOf(key)}:${stream}`;
    link.sender = sender;
    const entry = this.key(c, sender);
    try {
      const fromLog = this.high.has(entry) ? 0 : await this.lastInLog(c.stream, sender);
      // Everything accepted so far must be durable before it is claimed: a crash after the answer must not lose it.
      const commit = this.deps.log.commitWaiter();
      commit.cover(this.deps.log.appended());
      await commit.done;
      const after = Math.max(this.high.get(entry) ?? 0, fromLog);
      this.high.set(entry, after);
      if (c.closing || ws.readyState !== 1) return;
      link.ready = true;
      ws.send(JSON.stringify({ relay: { after } }));
    } catch (err) {
      this.high.delete(entry);
      this.deps.logger.warn("relay link: could not say what is held", { stream: c.stream, sender, error: err });
      close(ws, TRY_AGAIN, `relay link: cannot tell what is held: ${(err as Error).message}`);
    }
  }

  /** The highest seq of `sender` in the log of `stream` (0: none). */
  private async lastInLog(stream: string, sender: string): Promise<number> {
    const prefix = originPrefix(sender);
    const sql = "SELECT origin FROM messages WHERE stream = $1 AND starts_with(origin, $2) ORDER BY seq DESC LIMIT 1";
    for await (const r of queryRows(this.deps.reader, sql, [stream, prefix], 1, { client: "relay-in" })) {
      const n = Number(String(r.origin).slice(prefix.length));
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    }
    return 0;
  }

  private take(ws: ServerWebSocket<Connection>, link: Link, message: string | Buffer): void {
    const c = ws.data;
    const rule = 'relay link messages are {"id":"<seq>","data":"text"} or {"id":"<seq>","base64":"…"}';
    let v: Record<string, unknown>;
    try {
      v = typeof message === "string" ? JSON.parse(message) : null;
    } catch {
      return close(ws, POLICY, `not JSON: ${rule}`);
    }
    if (typeof v !== "object" || v === null || typeof v.id !== "string" || !/^[1-9]\d{0,15}$/.test(v.id)) return close(ws, POLICY, rule);
    let data: string | Uint8Array;
    if (typeof v.data === "string" && v.base64 === undefined) data = v.data;
    else if (typeof v.base64 === "string" && v.data === undefined) data = new Uint8Array(Buffer.from(v.base64, "base64"));
    else return close(ws, POLICY, rule);
    const seq = Number(v.id);
    const key = this.key(c, link.sender!);
    const round = link.forming ?? this.openRound(ws, link);
    round.ids.push(v.id);
    if (seq <= (this.high.get(key) ?? 0)) return; // a resend: held already, acknowledged with this round
    round.commit.cover(this.deps.log.appended() + 1);
    try {
      const first = c.published === 0;
      round.seq = this.deps.hub.publish(c.stream, data, relayedOrigin(link.sender!, seq), c).seq;
      if (first) this.deps.hub.notePublisher(c);
    } catch (err) {
      round.ids.pop();
      round.commit.cover(this.deps.log.appended());
      if (!(err instanceof PublishError)) throw err;
      return close(ws, err.code === "too_large" ? TOO_BIG : err.code === "log_unavailable" ? TRY_AGAIN : POLICY, err.message);
    }
    this.high.set(key, seq);
  }

  private openRound(ws: ServerWebSocket<Connection>, link: Link): Round {
    const round: Round = { ids: [], seq: 0, commit: this.deps.log.commitWaiter() };
    link.forming = round;
    setImmediate(() => {
      link.forming = null;
      link.chain = link.chain.then(() => this.settle(ws, link, round)).catch(() => close(ws, INTERNAL, "relay link: internal error while acknowledging"));
    });
    return round;
  }

  /** Acknowledges a round after its group commit; a failed commit forgets what this link claimed and closes it (the sender resends). */
  private async settle(ws: ServerWebSocket<Connection>, link: Link, round: Round): Promise<void> {
    try {
      await round.commit.done;
    } catch (err) {
      // What the log holds is unknown now: the next hello asks the log again.
      this.high.delete(this.key(ws.data, link.sender!));
      const stored = err instanceof LogWriteError ? err.stored : "unknown";
      if (ws.readyState === 1 && !ws.data.closing) ws.send(JSON.stringify({ error: { message: `not acknowledged: ${(err as Error).message}`, stored, count: round.ids.length } }));
      return close(ws, TRY_AGAIN, "relay link: the log could not store messages; send what was not acked again");
    }
    if (ws.data.closing || ws.readyState !== 1 || round.ids.length === 0) return;
    ws.send(JSON.stringify({ ack: { seq: round.seq, count: round.ids.length, ids: round.ids } }));
  }
}
