/** Where a destination's connection stands. */
export type DestinationState = "connecting" | "connected" | "backing-off" | "error" | "stopped";

/** A destination's live status and counters, as the API shows them. */
export class DestinationStatus {
  state: DestinationState = "connecting";
  since = new Date().toISOString();
  lastError: string | null = null;
  lastErrorAt: string | null = null;
  connects = 0;
  messagesOut = 0;
  bytesOut = 0;
  messagesIn = 0;
  bytesIn = 0;
  dropped = 0;

  /** Moves to `state`, noting when. */
  set(state: DestinationState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = new Date().toISOString();
  }

  /** Keeps an error for the status (the latest one). */
  fail(message: string): void {
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
  }

  toJSON() {
    return {
      state: this.state, since: this.since, last_error: this.lastError, last_error_at: this.lastErrorAt, connects: this.connects,
      messages_out: this.messagesOut, bytes_out: this.bytesOut, messages_in: this.messagesIn, bytes_in: this.bytesIn, dropped: this.dropped,
    };
  }
}

/** Reconnect timing: 1 s doubling to 10 s, each wait ±20 % so a fleet does not retry in step. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 10_000 };

/** The wait before attempt `n` (0-based) after failures, with jitter. */
export function backoffDelay(b: Backoff, failures: number): number {
  const raw = Math.min(b.maxMs, b.baseMs * 2 ** failures);
  return Math.round(raw * (0.8 + Math.random() * 0.4));
}

/** A sleep that `wake()` can cut short (to stop or reconnect at once). */
export class Pause {
  private wakeUp: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeUp = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.wakeUp?.();
    this.wakeUp = null;
  }
}
