import type { Hub } from "../hub/hub.ts";

/** Samples kept per stream: one a second, so the sparklines show the last three minutes. */
export const RATE_SAMPLES = 180;

/**
 * Messages per second of each stream, one sample a second, for the dashboard's
 * sparklines. `sample()` runs on the server's one-second tick.
 */
export class RateHistory {
  private readonly series = new Map<string, { last: number; rates: number[] }>();

  constructor(private readonly hub: Hub) {}

  sample(): void {
    const seen = new Set<string>();
    for (const s of this.hub.listStreams()) {
      seen.add(s.name);
      const entry = this.series.get(s.name);
      if (!entry) {
        this.series.set(s.name, { last: s.messagesIn, rates: [] });
        continue;
      }
      entry.rates.push(Math.max(0, s.messagesIn - entry.last));
      entry.last = s.messagesIn;
      if (entry.rates.length > RATE_SAMPLES) entry.rates.shift();
    }
    for (const name of this.series.keys()) if (!seen.has(name)) this.series.delete(name);
  }

  /** The stream's per-second rates, oldest first (empty for a stream not yet sampled). */
  of(stream: string): readonly number[] {
    return this.series.get(stream)?.rates ?? [];
  }
}
