import type { Message } from "../core/message.ts";
import type { Destination, DestinationDeps } from "./destination.ts";
import type { DestinationRule } from "./rule.ts";
import { backoffDelay, DestinationStatus, Pause } from "./status.ts";
import { redactDestination, scrubDestination } from "./secret-url.ts";
import { describeTlsFailure, outboundTls } from "../tls/outbound.ts";

/** Most messages a webhook destination keeps waiting; past that it drops (counted). */
const MAX_QUEUED = 10_000;

/**
 * A webhook destination: POSTs each local message (or batches of up to
 * `rule.batch`, as NDJSON) to an http(s) URL, in order, retrying a failed POST
 * with backoff until it succeeds. The queue is bounded by count and bytes.
 */
export class WebhookDestination implements Destination {
  readonly status = new DestinationStatus();
  private readonly queue: Message[] = [];
  private queuedBytes = 0;
  private stopped = false;
  private readonly pause = new Pause();
  private readonly idle = new Pause();
  private loop: Promise<void>;

  constructor(readonly rule: DestinationRule, private readonly deps: DestinationDeps) {
    this.status.set("connected");
    this.loop = this.run();
  }

  send(m: Message): void {
    if (this.queue.length >= MAX_QUEUED || this.queuedBytes + m.size > this.deps.bufferLimit()) {
      this.status.dropped++;
      return;
    }
    this.queue.push(m);
    this.queuedBytes += m.size;
    this.idle.wake();
  }

  reconnect(): void {
    this.pause.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.status.set("stopped");
    this.pause.wake();
    this.idle.wake();
    await this.loop;
    await this.deps.recorder?.close();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      if (this.queue.length === 0) {
        await this.idle.sleep(60_000);
        continue;
      }
      const batch = this.queue.slice(0, this.rule.batch);
      this.status.attempts++;
      try {
        await this.post(batch);
        this.queue.splice(0, batch.length);
        for (const m of batch) {
          this.queuedBytes -= m.size;
          this.status.messagesOut++;
          this.status.bytesOut += m.size;
          this.deps.recorder?.write(m);
        }
        if (failures > 0 || this.status.state !== "connected") this.status.connects++;
        failures = 0;
        this.status.healthy();
        this.status.set("connected");
      } catch (err) {
        this.status.fail((err as Error).message);
        this.status.failedAttempt();
        this.status.set("backing-off");
        await this.pause.sleep(backoffDelay(this.deps.backoff, failures++));
      }
    }
  }

  private async post(batch: Message[]): Promise<void> {
    const headers: Record<string, string> = { "X-Switchyard-Stream": this.rule.stream };
    if (this.rule.token) headers.Authorization = this.rule.token;
    let body: string | Uint8Array;
    if (this.rule.batch === 1) {
      const m = batch[0]!;
      body = m.data;
      headers["Content-Type"] = typeof m.data === "string" ? "text/plain; charset=utf-8" : "application/octet-stream";
      headers["X-Switchyard-Seq"] = String(m.seq);
      headers["X-Switchyard-Ts"] = String(m.ts);
    } else {
      body = batch.map((m) => JSON.stringify({
        stream: m.stream, seq: m.seq, ts: m.ts, origin: m.origin,
        kind: typeof m.data === "string" ? "text" : "binary",
        data: typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64"),
      })).join("\n") + "\n";
      headers["Content-Type"] = "application/x-ndjson";
    }
    let res: Response;
    try {
      res = await fetch(this.rule.destination, { ...outboundTls(), method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      // The URL may hold a secret (user:password@, a secret path): never in a status, alert or log line.
      throw new Error(`POST ${redactDestination(this.rule.destination, "webhook")} failed: ${describeTlsFailure(err, this.rule.destination) ?? scrubDestination((err as Error).message, this.rule)}`);
    }
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`POST ${redactDestination(this.rule.destination, "webhook")} answered ${res.status}`);
  }
}
