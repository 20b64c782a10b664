/** A source of time, injectable so tests and replays can control it. */
export interface Clock {
  /** Wall-clock time in microseconds since the Unix epoch. */
  nowMicros(): number;
  /** Wall-clock time in milliseconds since the Unix epoch. */
  nowMillis(): number;
}

const origin = performance.timeOrigin;

/**
 * The system clock, with microsecond resolution taken from the monotonic timer
 * anchored at process start, so timestamps never go backwards within a process.
 */
export const systemClock: Clock = {
  nowMicros: () => Math.floor((origin + performance.now()) * 1000),
  nowMillis: () => Math.floor(origin + performance.now()),
};
