import type { Connection } from "./connection.ts";
import type { FanOut } from "./fanout.ts";
import type { StreamState } from "./stream-state.ts";

/**
 * Who reads what: a reader of a stream is subscribed to its topic and, when the
 * stream has a feed rule (practable's /api/streams rules), to every stream the
 * rule lists. Counts the readers each stream has through feeds.
 */
export class Subscriptions {
  /** Feed rules: a client of the key stream also receives every listed stream. */
  private readonly feeds = new Map<string, string[]>();
  /** How many clients of other streams read a stream as a feed. */
  private readonly feedReaders = new Map<string, number>();

  /** `fanout` is asked at each call: the hub gets its fan-out once the server listens. */
  constructor(private readonly fanout: () => FanOut | null) {}

  /** Subscribes a connection to its stream and the stream's feeds (no-op when it already is). */
  subscribe(s: StreamState, c: Connection): void {
    if (c.subscribed) return;
    const fanout = this.fanout();
    fanout?.subscribe(c, s.name);
    for (const f of this.feeds.get(s.name) ?? []) {
      fanout?.subscribe(c, f);
      this.feedReaders.set(f, (this.feedReaders.get(f) ?? 0) + 1);
    }
    c.subscribed = true;
    s.readers++;
  }

  /** Takes a connection off its stream and the stream's feeds (no-op when it is not on them). */
  unsubscribe(s: StreamState, c: Connection): void {
    if (!c.subscribed) return;
    const fanout = this.fanout();
    fanout?.unsubscribe(c, s.name);
    for (const f of this.feeds.get(s.name) ?? []) {
      fanout?.unsubscribe(c, f);
      const n = (this.feedReaders.get(f) ?? 1) - 1;
      if (n > 0) this.feedReaders.set(f, n);
      else this.feedReaders.delete(f);
    }
    c.subscribed = false;
    s.readers--;
  }

  /**
   * Sets the feed rule of `stream` (`s` when it is live): its clients also receive
   * every stream in `feeds`. Applies to connected clients at once.
   */
  setFeeds(stream: string, s: StreamState | undefined, feeds: string[]): void {
    const live = s ? [...s.connections].filter((c) => c.subscribed) : [];
    for (const c of live) this.unsubscribe(s!, c);
    if (feeds.length > 0) this.feeds.set(stream, [...new Set(feeds)].filter((f) => f !== stream));
    else this.feeds.delete(stream);
    for (const c of live) this.subscribe(s!, c);
  }

  /** The feeds of a stream ([] when it has no rule). */
  feedsOf(stream: string): string[] {
    return this.feeds.get(stream) ?? [];
  }

  /** How many clients of other streams read `stream` as a feed. */
  feedReadersOf(stream: string): number {
    return this.feedReaders.size > 0 ? this.feedReaders.get(stream) ?? 0 : 0;
  }

  /** The streams that have a feed rule. */
  streamsWithFeeds(): IterableIterator<string> {
    return this.feeds.keys();
  }
}
