/**
 * Counts events per second over the last minute: `tick()` once a second closes
 * the current second. Cheap to `add` on the hot path.
 */
export class RateWindow {
  private current = 0;
  private readonly seconds = new Float64Array(60);
  private filled = 0;
  private head = 0;

  add(n = 1): void {
    this.current += n;
  }

  /** Closes the current second. */
  tick(): void {
    this.seconds[this.head] = this.current;
    this.head = (this.head + 1) % 60;
    if (this.filled < 60) this.filled++;
    this.current = 0;
  }

  /** Events in the last whole second. */
  get perSecond(): number {
    return this.filled === 0 ? 0 : this.seconds[(this.head + 59) % 60]!;
  }

  /** Mean events per second over the last minute (or since start, when younger). */
  get perMinute(): number {
    if (this.filled === 0) return 0;
    let sum = 0;
    for (let i = 0; i < this.filled; i++) sum += this.seconds[i]!;
    return sum / this.filled;
  }

  /** The last `n` per-second counts, oldest first (for sparklines). */
  history(n = 60): number[] {
    const k = Math.min(n, this.filled);
    const out: number[] = [];
    for (let i = k; i >= 1; i--) out.push(this.seconds[(this.head - i + 60) % 60]!);
    return out;
  }
}
