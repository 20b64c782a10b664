/** The limits of backlog catch-up, shared by every resume destination (0: no limit). */
export interface CatchupLimits {
  messagesPerSecond: number;
  bytesPerSecond: number;
}

/** Tokens are kept for at most this long a burst. */
const BURST_SECONDS = 0.25;

/**
 * A token bucket over messages and bytes that every destination catching up
 * on a backlog draws from, so that all the backlogs together stay under
 * `relay_catchup_messages_per_second` and `relay_catchup_bytes_per_second`
 * and live traffic keeps the rest of a thin uplink. Live messages never draw
 * from it.
 */
export class CatchupRate {
  private messages = 0;
  private bytes = 0;
  private at: number;

  constructor(private readonly limits: () => CatchupLimits, private readonly now: () => number = () => performance.now()) {
    this.at = this.now();
  }

  /** True when one more backlog message may go now. */
  ready(): boolean {
    this.refill();
    const l = this.limits();
    return (l.messagesPerSecond <= 0 || this.messages >= 1) && (l.bytesPerSecond <= 0 || this.bytes > 0);
  }

  /** Counts one backlog message of `size` bytes sent (the byte count may go negative: a big message borrows). */
  take(size: number): void {
    this.messages -= 1;
    this.bytes -= size;
  }

  /** ms until `ready()` may turn true. */
  waitMs(): number {
    const l = this.limits();
    const m = l.messagesPerSecond > 0 && this.messages < 1 ? ((1 - this.messages) / l.messagesPerSecond) * 1000 : 0;
    const b = l.bytesPerSecond > 0 && this.bytes <= 0 ? ((1 - this.bytes) / l.bytesPerSecond) * 1000 : 0;
    return Math.max(1, Math.ceil(Math.max(m, b)));
  }

  private refill(): void {
    const now = this.now();
    const seconds = (now - this.at) / 1000;
    this.at = now;
    const l = this.limits();
    this.messages = l.messagesPerSecond > 0 ? Math.min(l.messagesPerSecond * BURST_SECONDS + 1, this.messages + seconds * l.messagesPerSecond) : 0;
    this.bytes = l.bytesPerSecond > 0 ? Math.min(l.bytesPerSecond * BURST_SECONDS + 1, this.bytes + seconds * l.bytesPerSecond) : 0;
  }
}
