import type { Server, WebSocketHandler } from "bun";
import { AccessDenied, authorizeStream, clientAddress, tokenFromRequest, type Grant } from "../auth/access.ts";
import { PERCENT_ENCODING_RULE } from "../core/errors.ts";
import type { VerifyKeys } from "../auth/stream-token.ts";
import type { Logger } from "../core/logger.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import type { Settings } from "../config/settings.ts";
import { newConnection, type Connection, type Refusal } from "../hub/connection.ts";
import { Hub, PublishError } from "../hub/hub.ts";
import { STREAMS_EVENTS_STREAM } from "../hub/stream-events.ts";
import { streamStats } from "../hub/stream-state.ts";
import { acknowledged, DedupWindow, publishAcked, requestAcks, type AckLog } from "./publish-acks.ts";
import { envelopeJson, gapJson, parseReplayRequest, ReplayParamError, type Followers, type ReplayRequest } from "../sinks/replay.ts";
import { RELAY_PROTOCOL } from "../relay/relay-link.ts";
import { claimRelayLink, isRelayLink, RelayInbox } from "../relay/relay-inbox.ts";

/** Close codes Switchyard uses, with what each means. */
export const CLOSE = {
  /** Server shutting down. */
  goingAway: 1001,
  /** Policy: bad stream name, bad or missing token, scope missing, read-only stream. */
  policy: 1008,
  /** Message larger than max_message_bytes. */
  tooBig: 1009,
  /** Try again later: too many connections, too slow a reader under policy `disconnect`, or the log cannot write (the message was not stored or delivered). */
  tryAgain: 1013,
  /** The replay could not be served: reading the log failed. */
  internal: 1011,
  /** A raw (unframed) replay asked for messages before the start of history; the reason says where history starts. */
  historyGone: 4410,
} as const;

/** What the websocket endpoint needs. */
export interface WebSocketDeps {
  hub: Hub;
  settings: () => Settings;
  /** The secrets a token may verify with (this box's own, and an imported practable relay secret). */
  secret: VerifyKeys;
  logger: Logger;
  /** True for a booking id on the deny list (a token carrying it is refused). */
  isDenied?: (bookingId: string) => boolean;
  /** The durable log, for publishers that ask for acknowledgements (`?ack=`); without it `?ack=` is refused. */
  log?: AckLog;
  /** Subscribers that resume (after_seq, since, last) or ask for framing (envelope); absent: those parameters are refused. */
  followers?: Followers;
}

/** The path prefix of the stream endpoint. */
export const WS_PREFIX = "/ws/";

/**
 * Picks the subprotocol to answer with: "null" if offered (practable clients),
 * else the first named one (e.g. "switchyard"). A `token.<jwt>` protocol is
 * never answered: the response header would carry the whole token. Undefined
 * when nothing else was offered beside it (acceptUpgrade then refuses).
 */
function chooseProtocol(offered: string[]): string | undefined {
  return offered.includes("null") ? "null" : offered.find((p) => !p.startsWith("token."));
}

/** The subprotocols a client offered, in order. */
function offeredProtocols(header: string | null): string[] {
  return (header ?? "").split(",").map((p) => p.trim()).filter(Boolean);
}

/**
 * Upgrades a request for `/ws/{stream}`. A refused client (bad stream name, bad
 * token) is still upgraded so that it gets a close frame with the reason, which a
 * browser can read, instead of a bare HTTP error.
 */
export async function upgradeStream(req: Request, url: URL, server: Server<Connection>, deps: WebSocketDeps): Promise<Response | undefined> {
  let stream: string;
  let badEncoding = false;
  try {
    stream = decodeURIComponent(url.pathname.slice(WS_PREFIX.length));
  } catch {
    stream = url.pathname.slice(WS_PREFIX.length);
    badEncoding = true;
  }
  const replay = replayRequestOf(url, stream, deps);
  if (replay instanceof Response) return replay;
  const ip = server.requestIP(req);
  const address = ip?.address ?? "";
  const origin = `ws:${address}:${ip?.port ?? 0}`;
  let refusal: Refusal | undefined;
  let grant: Grant = { read: false, write: false, via: "token" };
  const problem = badEncoding ? `the stream name in the path is not valid percent-encoding: ${PERCENT_ENCODING_RULE}`
    : stream === STREAMS_EVENTS_STREAM ? null : streamNameProblem(stream);
  if (problem) {
    refusal = { code: CLOSE.policy, reason: problem };
  } else {
    const settings = deps.settings();
    try {
      grant = await authorizeStream({
        policy: settings.access, remoteAddress: clientAddress(req, address), token: tokenFromRequest(req, url),
        stream, secret: deps.secret, audience: settings.public_url, isDenied: deps.isDenied,
      });
    } catch (err) {
      if (!(err instanceof AccessDenied)) throw err;
      refusal = { code: CLOSE.policy, reason: err.reason };
    }
  }
  const conn = newConnection(stream, origin, grant, refusal);
  if (grant.bookingId) conn.bookingId = grant.bookingId;
  if (!conn.refusal) {
    const ackProblem = deps.log ? requestAcks(conn, url.searchParams.get("ack")) : url.searchParams.has("ack") ? "acknowledgements need the durable log" : null;
    if (ackProblem) conn.refusal = { code: CLOSE.policy, reason: ackProblem };
    // An acknowledged publisher only publishes: every frame it gets is an acknowledgement, never a message of the stream.
    else if (acknowledged(conn)) conn.grant = { ...conn.grant, read: false };
  }
  if (replay) conn.replay = replay;
  return acceptUpgrade(req, url, server, conn);
}

/**
 * The replay a subscriber asks for with `after_seq`, `since`, `last` and
 * `envelope` (null: a plain subscriber, raw payloads from now on, as ever);
 * a 400 before the upgrade when a value is malformed, saying what is allowed.
 */
function replayRequestOf(url: URL, stream: string, deps: WebSocketDeps): ReplayRequest | Response | null {
  let replay: ReplayRequest | null;
  try {
    replay = parseReplayRequest(url.searchParams);
  } catch (err) {
    if (!(err instanceof ReplayParamError)) throw err;
    return Response.json({ error: { status: 400, message: err.message } }, { status: 400 });
  }
  if (replay && (stream === STREAMS_EVENTS_STREAM || !deps.followers)) {
    return Response.json({ error: { status: 400, message: `${STREAMS_EVENTS_STREAM} has no history: after_seq, since, last and envelope apply to message streams` } }, { status: 400 });
  }
  return replay;
}

/**
 * Starts feeding a subscriber that resumes: its replay from memory or the log,
 * then live messages, each framed as it asked (raw payload, or a JSON envelope
 * with its seq). The follower pauses while the socket has more than
 * backpressure_limit_bytes waiting, and catches up again if it falls behind.
 */
function startFollowing(c: Connection, followers: Followers): void {
  const ws = c.ws!;
  const replay = c.replay!;
  if (!c.grant.read) {
    c.closing = true;
    ws.close(CLOSE.policy, reason(`after_seq, since, last and envelope need the 'read' scope on ${c.stream}`));
    return;
  }
  const problem = followers.startProblem(c.stream, replay.start);
  if (problem) {
    c.closing = true;
    ws.close(CLOSE.policy, reason(problem));
    return;
  }
  const json = replay.envelope === "json";
  c.follower = followers.follow(c.stream, replay.start, {
    send(m) {
      // As on a topic, a connection does not get back what it published itself.
      if (m.origin === c.origin || c.closing) return;
      ws.send(json ? envelopeJson(m) : m.data);
    },
    gap(g) {
      if (json) {
        ws.send(gapJson(g));
        return true;
      }
      if (!g.beforeHistory) return true;
      c.closing = true;
      ws.close(CLOSE.historyGone, reason(`history starts at seq ${g.to + 1}: seq ${g.from}..${g.to} are gone; reconnect with after_seq=${g.to} to accept the gap`));
      return false;
    },
    buffered: () => ws.getBufferedAmount(),
    fail(why) {
      c.closing = true;
      ws.close(CLOSE.internal, reason(why));
    },
  }, c.origin);
}

/**
 * Completes a websocket upgrade for a connection already decided on (accepted,
 * or refused with a reason it will get as a close frame); 426 for a plain HTTP request.
 */
export function acceptUpgrade(req: Request, url: URL, server: Server<Connection>, data: Connection): Response | undefined {
  const offered = offeredProtocols(req.headers.get("sec-websocket-protocol"));
  // Another Switchyard's store-and-forward destination (see relay/relay-link.ts): only for a writer that asked nothing else.
  const relayLink = offered.includes(RELAY_PROTOCOL) && !data.refusal && data.grant.write && !data.replay && !acknowledged(data);
  if (relayLink) claimRelayLink(data);
  const protocol = relayLink ? RELAY_PROTOCOL : chooseProtocol(offered);
  if (offered.length > 0 && !protocol) {
    // A client that offers subprotocols fails the handshake unless one is answered, and the token must not be.
    return Response.json({ error: { status: 400, message: "the only subprotocol offered is token.<jwt>, which is never echoed back; offer a named one beside it, e.g. new WebSocket(url, [\"switchyard\", \"token.\" + jwt])" } }, { status: 400 });
  }
  const upgraded = server.upgrade(req, { data, headers: protocol ? { "Sec-WebSocket-Protocol": protocol } : undefined });
  if (upgraded) return undefined;
  return Response.json({ error: { status: 426, message: `${url.pathname} is a websocket endpoint; connect with a websocket client (Upgrade: websocket)` } }, { status: 426, headers: { Upgrade: "websocket" } });
}

/**
 * The keepalive, run once a second: a connection silent (no message, no pong)
 * for half of `keepaliveMs` is pinged; silent for all of it, it gets a close
 * frame (1001, with the reason) and is cut off 2 s later if it does not answer.
 * Bun's own idle timeout only drops the TCP connection, without a close frame.
 */
export function keepaliveSweep(connections: Iterable<Connection>, keepaliveMs: number, now = Date.now()): void {
  for (const c of connections) {
    const ws = c.ws;
    if (!ws || c.closing || c.refusal) continue;
    const silent = now - c.lastHeard;
    if (silent >= keepaliveMs) {
      c.closing = true;
      ws.close(CLOSE.goingAway, `keepalive timeout: nothing received for ${Math.round(silent / 1000)} s, not even a pong`);
      c.timers.push(setTimeout(() => ws.readyState === 1 && ws.terminate(), 2000));
    } else if (silent >= keepaliveMs / 2 && now - c.pingedAt >= keepaliveMs / 4) {
      c.pingedAt = now;
      ws.ping();
    }
  }
}

/** Websocket close reasons are limited to 123 bytes. */
function reason(text: string): string {
  return Buffer.byteLength(text) <= 123 ? text : Buffer.from(text).subarray(0, 120).toString().replace(/\uFFFD$/, "") + "...";
}

/** The Bun websocket handlers that bind connections to the hub. */
export function streamSocketHandlers(deps: WebSocketDeps): Omit<WebSocketHandler<Connection>, "maxPayloadLength" | "backpressureLimit"> {
  const { hub, logger } = deps;
  const acks = deps.log ? { hub, settings: deps.settings, log: deps.log, dedup: new DedupWindow() } : null;
  const inbox = deps.log && deps.followers ? new RelayInbox({ hub, log: deps.log, reader: deps.followers.deps.log, logger }) : null;
  return {
    open(ws) {
      const c = ws.data;
      c.ws = ws;
      if (c.refusal) {
        hub.countRefused(c.refusal.code === CLOSE.policy ? "policy" : "other");
        c.closing = true;
        ws.close(c.refusal.code, reason(c.refusal.reason));
        return;
      }
      const max = deps.settings().max_connections;
      if (!hub.roomFor(max)) {
        hub.countRefused("max_connections");
        c.closing = true;
        ws.close(CLOSE.tryAgain, `too many connections: the limit is ${max} (setting max_connections)`);
        return;
      }
      if (c.stream === STREAMS_EVENTS_STREAM && !c.grant.read) {
        hub.countRefused("policy");
        c.closing = true;
        ws.close(CLOSE.policy, `${STREAMS_EVENTS_STREAM} needs the 'read' scope`);
        return;
      }
      hub.join(c);
      if (c.grant.exp) {
        // Timers hold at most about 24.8 days: re-arm until the real expiry.
        const arm = () => {
          const ms = c.grant.exp! * 1000 - Date.now();
          c.timers.push(setTimeout(() => {
            if (c.grant.exp! * 1000 > Date.now()) return arm();
            c.closing = true;
            ws.close(CLOSE.policy, "token expired");
          }, Math.max(0, Math.min(ms, 2 ** 31 - 1))));
        };
        arm();
      }
      if (c.replay && deps.followers) startFollowing(c, deps.followers);
      if (c.stream === STREAMS_EVENTS_STREAM) {
        ws.send(JSON.stringify({ event: "snapshot", streams: hub.listStreams().map(streamStats), ts: new Date().toISOString() }));
      }
    },
    message(ws, message) {
      const c = ws.data;
      c.lastHeard = Date.now();
      if (c.refusal || c.closing) return;
      if (c.stream === STREAMS_EVENTS_STREAM) {
        c.closing = true;
        ws.close(CLOSE.policy, `${STREAMS_EVENTS_STREAM} is a read-only system stream`);
        return;
      }
      if (!c.grant.write) {
        c.closing = true;
        ws.close(CLOSE.policy, reason(`this connection may not write to ${c.stream}: its token lacks the 'write' scope`));
        return;
      }
      // Another Switchyard's store-and-forward destination: see relay/relay-inbox.ts.
      if (isRelayLink(c)) {
        if (inbox) return inbox.message(ws, message);
        c.closing = true;
        return ws.close(CLOSE.internal, "relay links need the durable log");
      }
      // A publisher that asked for acknowledgements (?ack=): see publish-acks.ts.
      if (acks && acknowledged(c)) return publishAcked(ws, message, acks);
      try {
        const first = c.published === 0;
        hub.publish(c.stream, message, c.origin, c);
        if (first) hub.notePublisher(c);
      } catch (err) {
        if (!(err instanceof PublishError)) throw err;
        c.closing = true;
        ws.close(err.code === "too_large" ? CLOSE.tooBig : err.code === "log_unavailable" ? CLOSE.tryAgain : CLOSE.policy, reason(err.message));
      }
    },
    pong(ws) {
      ws.data.lastHeard = Date.now();
    },
    drain(ws) {
      hub.drained(ws.data);
      ws.data.follower?.drained();
    },
    close(ws) {
      if (ws.data.follower) deps.followers?.unfollow(ws.data.follower);
      hub.leave(ws.data);
    },
    error(error, ws) {
      logger.error("websocket handler failed", { origin: ws.data.origin, error });
    },
  };
}
