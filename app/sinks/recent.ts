import type { Message } from "../core/message.ts";

/** Limits of the recent-messages memory (the settings' fields), read on every add so changes apply live. */
export interface RecentLimits {
  recent_messages_per_stream: number;
  recent_bytes_per_stream: number;
  recent_total_bytes: number;
}

/** Bytes counted per kept message on top of its payload. */
export const OVERHEAD = 200;

interface Ring {
  messages: Message[];
  bytes: number;
}

/** What to return: the latest `limit` messages, newer than `since` (µs) and/or `afterSeq`. */
export interface RecentQuery {
  limit: number;
  since?: number;
  afterSeq?: number;
}

/**
 * The latest messages of each stream, in memory: for devices and dashboards that
 * ask "what did X say last" (GET /api/streams/{name}/messages). Kept per stream
 * by count and bytes, and across streams by total bytes (each message counted at
 * its payload plus 200 bytes), dropping the stream least
 * recently written first. Outlives the stream's listing, so a device that reports
 * once an hour can still be looked up.
 */
export class RecentMessages {
  private readonly rings = new Map<string, Ring>();
  private total = 0;
  private last: string | null = null;

  constructor(private readonly limits: () => RecentLimits) {}

  /** A hub sink: remembers `m`. */
  add(m: Message): void {
    const limits = this.limits();
    const perStreamMessages = limits.recent_messages_per_stream;
    const perStreamBytes = limits.recent_bytes_per_stream;
    const totalBytes = limits.recent_total_bytes;
    if (perStreamMessages === 0) return;
    let ring = this.rings.get(m.stream);
    if (!ring) {
      ring = { messages: [], bytes: 0 };
      this.rings.set(m.stream, ring);
    } else if (this.last !== m.stream) {
      // Map order is least recently written first.
      this.rings.delete(m.stream);
      this.rings.set(m.stream, ring);
    }
    this.last = m.stream;
    // What a kept message costs besides its payload (the object, its strings): counted so tiny messages cannot grow memory unseen.
    const size = m.size + OVERHEAD;
    ring.messages.push(m);
    ring.bytes += size;
    this.total += size;
    while (ring.messages.length > perStreamMessages || (ring.bytes > perStreamBytes && ring.messages.length > 1)) this.dropOldest(ring);
    while (this.total > totalBytes && this.rings.size > 1) {
      const [oldest, r] = this.rings.entries().next().value as [string, Ring];
      if (oldest === m.stream) break;
      this.total -= r.bytes;
      this.rings.delete(oldest);
    }
  }

  /** The matching messages of a stream, oldest first; null when nothing is kept for it. */
  query(stream: string, q: RecentQuery): Message[] | null {
    const ring = this.rings.get(stream);
    if (!ring) return null;
    let out = ring.messages;
    if (q.since !== undefined) out = out.filter((m) => m.ts > q.since!);
    if (q.afterSeq !== undefined) out = out.filter((m) => m.seq > q.afterSeq!);
    return out.slice(Math.max(0, out.length - q.limit));
  }

  /**
   * Up to `max` messages of a stream with seq > `afterSeq`, oldest first, when
   * memory holds them all from `afterSeq + 1` on (the ring is a run of
   * consecutive deliveries up to the latest); null when it does not, so the
   * caller reads the log instead. [] when nothing newer was delivered.
   */
  after(stream: string, afterSeq: number, max: number): Message[] | null {
    const messages = this.rings.get(stream)?.messages;
    if (!messages || messages.length === 0 || messages[0]!.seq > afterSeq + 1) return null;
    let lo = 0;
    let hi = messages.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (messages[mid]!.seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    return messages.slice(lo, lo + max);
  }

  /** The seq before the first kept message of a stream received after `sinceUs`; null when memory does not reach back that far. */
  seqBefore(stream: string, sinceUs: number): number | null {
    const messages = this.rings.get(stream)?.messages;
    if (!messages || messages.length === 0 || messages[0]!.ts > sinceUs) return null;
    const first = messages.find((m) => m.ts > sinceUs);
    return first ? first.seq - 1 : messages[messages.length - 1]!.seq;
  }

  /** The oldest message kept for a stream, if any. */
  oldest(stream: string): Message | null {
    return this.rings.get(stream)?.messages[0] ?? null;
  }

  /** Payload bytes held, across streams. */
  get bytes(): number {
    return this.total;
  }

  private dropOldest(ring: Ring): void {
    const gone = ring.messages.shift()!;
    ring.bytes -= gone.size + OVERHEAD;
    this.total -= gone.size + OVERHEAD;
  }
}
