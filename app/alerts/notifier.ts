import type { Logger } from "../core/logger.ts";
import { sendToSlack, type SlackMessage, type SlackResult } from "./slack.ts";

/** Most alert messages waiting to go to Slack; past that new ones are dropped (counted). */
const MAX_QUEUED = 100;
/** Attempts per message before it is given up (counted as failed). */
const MAX_ATTEMPTS = 6;

/** What the notifier reports of itself. */
export interface NotifierStats {
  queued: number;
  sent: number;
  failed: number;
  dropped: number;
  last_error: string | null;
}

/**
 * Sends alert messages to Slack in the background, in order, one at a time:
 * a failed send (other than a bad URL or 4xx) is retried with backoff, 1 s
 * doubling to 60 s. The queue is bounded and nothing waits on it.
 */
export class SlackNotifier {
  private readonly queue: SlackMessage[] = [];
  private running = false;
  private readonly counts = { sent: 0, failed: 0, dropped: 0 };
  private lastError: string | null = null;
  private wake: (() => void) | null = null;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly url: () => string | null,
    private readonly logger: Logger,
    private readonly opts: { baseDelayMs?: number; timeoutMs?: number } = {},
  ) {}

  /** Queues a message; returns false (and counts a drop) when the queue is full or no URL is set. */
  enqueue(message: SlackMessage): boolean {
    if (this.stopped || !this.url()) return false;
    if (this.queue.length >= MAX_QUEUED) {
      this.counts.dropped++;
      return false;
    }
    this.queue.push(message);
    if (!this.running) void this.pump();
    return true;
  }

  stats(): NotifierStats {
    return { queued: this.queue.length, ...this.counts, last_error: this.lastError };
  }

  /** Waits up to `ms` for the queue to empty (at shutdown, for the "stopping" message). */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while ((this.queue.length > 0 || this.running) && Date.now() < deadline) {
      this.wake?.();
      await Bun.sleep(20);
    }
  }

  /** Stops for good: drops what is queued (counted) and cancels a send in flight (at shutdown, after drain). */
  stop(): void {
    this.stopped = true;
    this.counts.dropped += this.queue.length;
    this.queue.length = 0;
    this.abort.abort();
    this.wake?.();
  }

  private async pump(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const message = this.queue[0]!;
        let result: SlackResult | null = null;
        for (let attempt = 0; attempt < MAX_ATTEMPTS && !this.stopped; attempt++) {
          const url = this.url();
          if (!url) break;
          result = await sendToSlack(url, message, this.opts.timeoutMs, this.abort.signal);
          if (this.stopped) return;
          if (result.ok || result.reason === "bad_url" || result.reason === "not_found" || result.reason === "invalid_payload") break;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(60_000, (this.opts.baseDelayMs ?? 1000) * 2 ** attempt));
            this.wake = () => { clearTimeout(timer); resolve(); };
          });
          this.wake = null;
          if (this.stopped) return;
        }
        this.queue.shift();
        if (result?.ok) this.counts.sent++;
        else {
          this.counts.failed++;
          this.lastError = result?.message ?? "no webhook URL";
          this.logger.warn("slack alert could not be sent", { error: this.lastError });
        }
      }
    } finally {
      this.running = false;
    }
  }
}
