import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { PublishError, type Hub } from "../hub/hub.ts";
import type { Recorder } from "./recorder.ts";
import type { DestinationRule } from "./rule.ts";
import { backoffDelay, DestinationStatus, LogRateLimit, Pause, type Backoff } from "./status.ts";
import { redactDestination, scrubDestination } from "./secret-url.ts";
import { describeTlsFailure, outboundTls } from "../tls/outbound.ts";
import { ResumeSender, type ResumeDeps } from "./resume-sender.ts";

/** What every destination kind offers the manager. */
export interface Destination {
  readonly rule: DestinationRule;
  readonly status: DestinationStatus;
  /** Hands one local message to the destination; never waits. */
  send(m: Message): void;
  /** Drops the current connection (if any) and tries again at once. */
  reconnect(): void;
  stop(): Promise<void>;
}

/** What a destination needs from the box. */
export interface DestinationDeps {
  hub: Hub;
  logger: Logger;
  backoff: Backoff;
  /** Bytes that may wait to go out before messages are dropped. */
  bufferLimit: () => number;
  recorder: Recorder | null;
  /** Silence (ms) after which a connected remote counts as down; it is pinged every third of it. */
  silenceMs?: () => number;
  /** A connection that closes sooner than this after opening counts as a failed attempt (default 3 s). */
  stableMs?: number;
  /** Store and forward, for rules with `"resume": true`. */
  resume?: ResumeDeps;
}

/** Close codes that mean "refused": they always count as a failed attempt. */
export function isRefusalCode(code: number): boolean {
  return code === 1008 || code === 1013 || (code >= 4000 && code <= 4999);
}

/** A failure log line at most once a minute per destination (with the count held back). */
const FAILURE_LOG_INTERVAL_MS = 60_000;
const DEFAULT_STABLE_MS = 3000;
/** A websocket handshake that has not finished by then is given up (a frozen remote accepts TCP and answers nothing). */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_SILENCE_MS = 60_000;

/** How a session ended. */
interface SessionEnd {
  opened: boolean;
  lastedMs: number;
  code: number;
  reason: string;
  /** Closed by us because the remote went silent. */
  silent: boolean;
  /** Closed by us for this reason (store and forward could not go on): a failed attempt. */
  failure: string | null;
  /** Why the TLS handshake failed (untrusted or expired certificate), when it did. */
  tlsFailure: string | null;
}

/**
 * A practable-style relay session: with a token, POST the access URL with
 * `Authorization: <token>` and dial the `uri` it answers; without, dial the
 * destination. Local messages go out one websocket message each; remote
 * messages are published locally with origin `relay:<id>` (and not sent back).
 *
 * Reconnects with backoff (1 s doubling to 10 s, jittered). Unlike practable, a
 * connection that closes within `stableMs` of opening, with a refusal code
 * (1008, 1013, 4xxx), or because the remote went silent counts as a failed
 * attempt: a relay that accepts and at once closes would otherwise be dialled
 * thousands of times a second. After a connection that lasted, it reconnects at
 * once. The remote is pinged; hearing nothing (no pong, no message) for the
 * silence limit closes the connection, so a frozen relay does not look connected.
 */
export class WebSocketDestination implements Destination {
  readonly status = new DestinationStatus();
  private ws: WebSocket | null = null;
  private stopped = false;
  private readonly pause = new Pause();
  private readonly origin: string;
  private readonly failureLog = new LogRateLimit(FAILURE_LOG_INTERVAL_MS);
  private loop: Promise<void>;
  /** Store and forward (`"resume": true`): the cursor, the backlog and its catch-up. */
  readonly resume: ResumeSender | null;

  constructor(readonly rule: DestinationRule, private readonly deps: DestinationDeps) {
    this.origin = `relay:${rule.id}`;
    this.resume = rule.resume && deps.resume ? new ResumeSender(rule, this.origin, deps.resume, deps.hub, this.status, deps.logger, deps.recorder) : null;
    if (this.resume) this.status.resume = () => this.resume!.view();
    this.loop = this.run();
  }

  send(m: Message): void {
    if (this.resume) return this.resume.offer(m);
    if (m.origin === this.origin) return; // it came from this remote: no echo
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > this.deps.bufferLimit()) {
      this.status.dropped++;
      return;
    }
    ws.send(m.data);
    this.status.messagesOut++;
    this.status.bytesOut += m.size;
    this.deps.recorder?.write(m);
  }

  reconnect(): void {
    this.ws?.close(1000, "reconnect requested");
    this.pause.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.status.set("stopped");
    const ws = this.ws;
    ws?.close(1000, "destination removed or replaced");
    this.pause.wake();
    // A remote that does not read never answers the close; cut it off after 2 s.
    const closed = await Promise.race([this.loop.then(() => true), Bun.sleep(2000).then(() => false)]);
    if (!closed) {
      ws?.terminate();
      await this.loop;
    }
    this.resume?.flush();
    await this.deps.recorder?.close();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.status.set("connecting");
      this.status.attempts++;
      try {
        const uri = this.rule.token ? await this.access() : this.rule.destination;
        if (this.stopped) break;
        const end = await this.session(uri);
        if (this.stopped) break;
        const where = uri.replace(/\?.*$/, "");
        const why = `closed with ${end.code}${end.reason ? `: ${end.reason}` : ""}`;
        if (!end.opened) throw new Error(`could not connect to ${where}: ${end.tlsFailure ?? why}`);
        if (end.failure) throw new Error(`connection to ${where} closed: ${end.failure}`);
        if (end.silent) throw new Error(`connection to ${where} closed: the remote sent nothing (not even a pong) for ${Math.round(this.silenceMs() / 1000)} s`);
        if (isRefusalCode(end.code)) throw new Error(`connection to ${where} refused: ${why}`);
        if (end.lastedMs < this.stableMs()) throw new Error(`connection to ${where} ${why} ${end.lastedMs} ms after opening`);
        // It lasted and then closed: straight back, as practable does.
        this.status.fail(`connection to ${where} ${why}`);
        this.status.healthy();
        continue;
      } catch (err) {
        this.failed((err as Error).message);
      }
      if (this.stopped) break;
      this.status.set("backing-off");
      await this.pause.sleep(backoffDelay(this.deps.backoff, this.status.failures - 1));
    }
    this.status.set("stopped");
  }

  private stableMs(): number {
    return this.deps.stableMs ?? DEFAULT_STABLE_MS;
  }

  private silenceMs(): number {
    return this.deps.silenceMs?.() ?? DEFAULT_SILENCE_MS;
  }

  /** Counts a failed attempt, keeps its reason, and logs it (at most once a minute). */
  private failed(message: string): void {
    this.status.failedAttempt();
    this.status.fail(message);
    const held = this.failureLog.take();
    if (held === null) return;
    this.deps.logger.warn("destination failed", {
      id: this.rule.id, destination: redactDestination(this.rule.destination, this.rule.kind), error: scrubDestination(message, this.rule), failures: this.status.failures,
      ...(held > 0 ? { similar_lines_held_back: held } : {}),
    });
  }

  /** The access step: POST with the raw token, expect 2xx and {"uri": "ws(s)://…"}. */
  private async access(): Promise<string> {
    let res: Response;
    try {
      res = await fetch(this.rule.destination, { ...outboundTls(), method: "POST", headers: { Authorization: this.rule.token }, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw new Error(`access request to ${this.rule.destination} failed: ${describeTlsFailure(err, this.rule.destination) ?? (err as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) throw new Error(`access request to ${this.rule.destination} answered ${res.status}: ${text.slice(0, 200)}`);
    let uri: unknown;
    try { uri = (JSON.parse(text) as { uri?: unknown }).uri; } catch { uri = undefined; }
    if (typeof uri !== "string" || !/^wss?:\/\//.test(uri)) throw new Error(`access request to ${this.rule.destination} answered no ws(s):// uri: ${text.slice(0, 200)}`);
    return uri;
  }

  /** Dials `uri` and runs the session until it closes. */
  private session(uri: string): Promise<SessionEnd> {
    return new Promise((resolve) => {
      let openedAt = 0;
      let lastHeard = 0;
      let silent = false;
      let failure: string | null = null;
      let watch: ReturnType<typeof setInterval> | null = null;
      let stable: ReturnType<typeof setTimeout> | null = null;
      let done = false;
      const ws = new WebSocket(uri, this.resume ? { ...outboundTls(), protocols: ResumeSender.protocols } : outboundTls());
      // A certificate problem shows only as an error event before the close: keep its reason.
      let tlsFailure: string | null = null;
      ws.onerror = (e) => (tlsFailure = describeTlsFailure(e, uri));
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      const handshake = setTimeout(() => {
        ws.terminate();
        finish(1006, `no websocket handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
      }, HANDSHAKE_TIMEOUT_MS);
      const finish = (code: number, reason: string) => {
        if (done) return;
        done = true;
        clearTimeout(handshake);
        if (watch) clearInterval(watch);
        if (stable) clearTimeout(stable);
        if (this.ws === ws) this.ws = null;
        this.resume?.closed();
        this.status.lastCloseCode = code;
        this.status.lastCloseReason = reason;
        resolve({ opened: openedAt > 0, lastedMs: openedAt ? Date.now() - openedAt : 0, code, reason, silent, failure, tlsFailure });
      };
      ws.onopen = () => {
        clearTimeout(handshake);
        openedAt = lastHeard = Date.now();
        this.status.connects++;
        this.status.set("connected");
        if (this.status.failures === 0) this.deps.logger.info("destination connected", { id: this.rule.id, stream: this.rule.stream });
        stable = setTimeout(() => {
          if (this.status.failures > 0) this.deps.logger.info("destination connected again", { id: this.rule.id, stream: this.rule.stream, after_failures: this.status.failures });
          this.status.healthy();
          this.failureLog.reset();
        }, this.stableMs());
        // Ping a third of the silence limit apart; a remote that answers nothing for the whole limit is down.
        const limit = this.silenceMs();
        watch = setInterval(() => {
          if (Date.now() - lastHeard > limit) {
            silent = true;
            ws.terminate();
            finish(1006, "remote silent");
            return;
          }
          try { ws.ping(); } catch { /* closing already */ }
        }, Math.max(200, Math.floor(limit / 3)));
        this.resume?.opened(ws, (why) => {
          if (done) return;
          failure = why;
          ws.terminate();
          finish(1006, why);
        });
      };
      ws.addEventListener("pong", (e) => {
        lastHeard = Date.now();
        this.resume?.pong((e as MessageEvent).data);
      });
      ws.onmessage = (e) => {
        lastHeard = Date.now();
        if (this.resume?.frame(e.data as string | ArrayBuffer, (why) => { failure = why; ws.terminate(); finish(1006, why); })) return;
        const data = typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer);
        try {
          const m = this.deps.hub.publish(this.rule.stream, data, this.origin);
          this.status.messagesIn++;
          this.status.bytesIn += m.size;
        } catch (err) {
          if (!(err instanceof PublishError)) throw err;
          this.status.dropped++;
          this.status.fail(`message from the remote refused: ${err.message}`);
        }
      };
      ws.onclose = (e) => finish(e.code, e.reason);
    });
  }
}
