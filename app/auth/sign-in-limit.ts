/** How many failures, in what window, from how many clients the limiter keeps. */
export interface SignInLimits {
  perClient: number;
  windowMs: number;
  concurrent: number;
  /** Most clients remembered at once. */
  maxClients: number;
}

/**
 * Limits sign-in attempts: at most `perClient` failures per client in a window
 * (an attempt counts as failed from the moment it starts, so parallel guesses
 * cannot slip past the check while the slow hash runs), and at most
 * `concurrent` password checks at once (argon2 is meant to be slow: it must not
 * become a way to keep the box busy).
 *
 * Memory is bounded (`maxClients`) without ever forgetting a blocked client early:
 * when full, clients whose window has passed go first, then the least recently
 * seen clients that are not blocked. A blocked client is forgotten only when its
 * window ends, so flooding the table with new clients cannot unblock anyone.
 */
export class SignInLimiter {
  /** Failure times per client, oldest first; the map's order is least recently seen first. */
  private readonly failures = new Map<string, number[]>();
  private checking = 0;

  constructor(private readonly limits: SignInLimits = { perClient: 5, windowMs: 60_000, concurrent: 2, maxClients: 10_000 }) {}

  /** How many clients are remembered now. */
  get size(): number {
    return this.failures.size;
  }

  /**
   * Starts an attempt: "ok" with a `done(succeeded)` to call after the check, or
   * the seconds to wait (too many failures) or "busy" (too many checks at once).
   */
  begin(client: string, now = Date.now()): { ok: true; done(succeeded: boolean): void } | { ok: false; retryAfter: number; busy: boolean } {
    const since = now - this.limits.windowMs;
    const known = this.failures.get(client);
    const mine = (known ?? []).filter((t) => t > since);
    if (mine.length >= this.limits.perClient) {
      return { ok: false, busy: false, retryAfter: Math.max(1, Math.ceil((mine[0]! + this.limits.windowMs - now) / 1000)) };
    }
    if (this.checking >= this.limits.concurrent) return { ok: false, busy: true, retryAfter: 1 };
    // A client we cannot remember is not let in: that would be a guess without a count.
    if (!known && !this.makeRoom(since)) return { ok: false, busy: true, retryAfter: 1 };
    mine.push(now);
    this.failures.delete(client);
    this.failures.set(client, mine);
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

  /** Frees one place when the table is full; false when every remembered client is blocked. */
  private makeRoom(since: number): boolean {
    if (this.failures.size < this.limits.maxClients) return true;
    for (const [client, times] of this.failures) {
      if (this.failures.size < this.limits.maxClients) break;
      let live = 0;
      for (let i = times.length - 1; i >= 0 && times[i]! > since; i--) live++;
      if (live < this.limits.perClient) this.failures.delete(client);
    }
    return this.failures.size < this.limits.maxClients;
  }
}
