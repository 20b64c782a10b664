/**
 * Limits failed sign-ins: at most `perClient` failures per client address and
 * `overall` failures in all per window; past that, sign-in is refused until the
 * window has moved on. Successful sign-ins clear the client's count.
 */
export class SignInLimiter {
  private readonly failures = new Map<string, number[]>();
  private all: number[] = [];

  constructor(private readonly limits = { perClient: 5, overall: 50, windowMs: 60_000 }) {}

  /** Seconds until `client` may try again, or 0 when it may now. */
  retryAfter(client: string, now = Date.now()): number {
    const since = now - this.limits.windowMs;
    const mine = (this.failures.get(client) ?? []).filter((t) => t > since);
    this.all = this.all.filter((t) => t > since);
    const blocking = mine.length >= this.limits.perClient ? mine : this.all.length >= this.limits.overall ? this.all : null;
    if (!blocking) return 0;
    return Math.max(1, Math.ceil((blocking[0]! + this.limits.windowMs - now) / 1000));
  }

  failed(client: string, now = Date.now()): void {
    const since = now - this.limits.windowMs;
    const mine = (this.failures.get(client) ?? []).filter((t) => t > since);
    mine.push(now);
    this.failures.set(client, mine);
    this.all.push(now);
    if (this.failures.size > 10_000) this.failures.clear();
  }

  succeeded(client: string): void {
    this.failures.delete(client);
  }
}
