/**
 * Limits sign-in attempts: at most `perClient` failures per client in a window
 * (an attempt counts as failed from the moment it starts, so parallel guesses
 * cannot slip past the check while the slow hash runs), and at most
 * `concurrent` password checks at once (argon2 is meant to be slow: it must not
 * become a way to keep the box busy).
 */
export class SignInLimiter {
  private readonly failures = new Map<string, number[]>();
  private checking = 0;

  constructor(private readonly limits = { perClient: 5, windowMs: 60_000, concurrent: 2 }) {}

  /**
   * Starts an attempt: "ok" with a `done(succeeded)` to call after the check, or
   * the seconds to wait (too many failures) or "busy" (too many checks at once).
   */
  begin(client: string, now = Date.now()): { ok: true; done(succeeded: boolean): void } | { ok: false; retryAfter: number; busy: boolean } {
    const since = now - this.limits.windowMs;
    const mine = (this.failures.get(client) ?? []).filter((t) => t > since);
    if (mine.length >= this.limits.perClient) {
      return { ok: false, busy: false, retryAfter: Math.max(1, Math.ceil((mine[0]! + this.limits.windowMs - now) / 1000)) };
    }
    if (this.checking >= this.limits.concurrent) return { ok: false, busy: true, retryAfter: 1 };
    mine.push(now);
    this.failures.set(client, mine);
    if (this.failures.size > 10_000) this.prune(since);
    this.checking++;
    let finished = false;
    return {
      ok: true,
      done: (succeeded) => {
        if (finished) return;
        finished = true;
        this.checking--;
        if (succeeded) this.failures.delete(client);
      },
    };
  }

  private prune(since: number): void {
    for (const [k, v] of this.failures) if (!v.some((t) => t > since)) this.failures.delete(k);
    if (this.failures.size > 10_000) this.failures.clear();
  }
}
