import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { PublishError, type Hub } from "../hub/hub.ts";
import type { Recorder } from "./recorder.ts";
import type { DestinationRule } from "./rule.ts";
import { backoffDelay, DestinationStatus, Pause, type Backoff } from "./status.ts";
import { redactDestination, scrubDestination } from "./secret-url.ts";
import { describeTlsFailure, outboundTls } from "../tls/outbound.ts";

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
}

/**
 * A practable-style relay session: with a token, POST the access URL with
 * `Authorization: <token>` and dial the `uri` it answers; without, dial the
 * destination. Local messages go out one websocket message each; remote
 * messages are published locally with origin `relay:<id>` (and not sent back).
 * Reconnects with backoff; after a connection that worked, at once.
 */
export class WebSocketDestination implements Destination {
  readonly status = new DestinationStatus();
  private ws: WebSocket | null = null;
  private stopped = false;
  private readonly pause = new Pause();
  private readonly origin: string;
  private loop: Promise<void>;

  constructor(readonly rule: DestinationRule, private readonly deps: DestinationDeps) {
    this.origin = `relay:${rule.id}`;
    this.loop = this.run();
  }

  send(m: Message): void {
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
    await this.deps.recorder?.close();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.status.set("connecting");
      try {
        const uri = this.rule.token ? await this.access() : this.rule.destination;
        if (this.stopped) break;
        const opened = await this.session(uri);
        if (opened) {
          failures = 0;
          continue; // it worked and then closed: straight back
        }
      } catch (err) {
        this.status.fail((err as Error).message);
        this.deps.logger.warn("destination failed", { id: this.rule.id, destination: redactDestination(this.rule.destination, this.rule.kind), error: scrubDestination((err as Error).message, this.rule) });
      }
      if (this.stopped) break;
      this.status.set("backing-off");
      await this.pause.sleep(backoffDelay(this.deps.backoff, failures++));
    }
    this.status.set("stopped");
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

  /** Dials `uri` and runs the session until it closes. Resolves true when it had opened. */
  private session(uri: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(uri, outboundTls());
      let tlsFailure: string | null = null;
      ws.onerror = (e) => (tlsFailure = describeTlsFailure(e, uri));
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        this.status.connects++;
        this.status.set("connected");
        this.deps.logger.info("destination connected", { id: this.rule.id, stream: this.rule.stream });
      };
      ws.onmessage = (e) => {
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
      ws.onclose = (e) => {
        this.ws = null;
        const why = `closed with ${e.code}${e.reason ? `: ${e.reason}` : ""}`;
        if (opened) {
          if (e.code !== 1000 || !this.stopped) this.status.fail(`connection to ${uri.replace(/\?.*$/, "")} ${why}`);
          resolve(true);
        } else reject(new Error(`could not connect to ${uri.replace(/\?.*$/, "")}: ${tlsFailure ?? why}`));
      };
    });
  }
}
