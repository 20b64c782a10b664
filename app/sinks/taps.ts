import type { Message } from "../core/message.ts";

type Tap = (m: Message) => void;

/**
 * Watchers of single streams (the admin UI's live tail): fed from the hub's
 * delivery sinks, added and removed as pages open and close.
 */
export class StreamTaps {
  private readonly taps = new Map<string, Set<Tap>>();

  /** Calls `tap` with each message of `stream` as it is delivered; returns the function that stops it. */
  add(stream: string, tap: Tap): () => void {
    let set = this.taps.get(stream);
    if (!set) this.taps.set(stream, (set = new Set()));
    set.add(tap);
    return () => {
      set!.delete(tap);
      if (set!.size === 0 && this.taps.get(stream) === set) this.taps.delete(stream);
    };
  }

  /** The streams tapped now. */
  streams(): string[] {
    return [...this.taps.keys()];
  }

  deliver(m: Message): void {
    const set = this.taps.get(m.stream);
    if (set) for (const tap of set) tap(m);
  }
}
