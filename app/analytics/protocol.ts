import type { QueryEngineOptions } from "./engine.ts";
import type { Quarantined } from "../log/quarantine.ts";
import type { CompactJob } from "../log/compact-process.ts";
import type { CompactionOutcome } from "../log/compactor.ts";

/** Output formats of a query. grid: JSON {columns, types, rows: [[…]]} for the admin UI's table and chart. */
export type QueryFormat = "table" | "csv" | "json" | "ndjson" | "parquet" | "grid";

/** Hub → query process. */
export type ToEngine =
  | { type: "open"; dirs: QueryEngineOptions; resultBytes: number; cacheBytes: number; yieldMs: number }
  /**
   * `rideOn`: the hub sent it without a slot, for it is identical to query `rideOn` running here; it
   * is answered with that run's answer (`answerOf`) when it would read the same data, else with
   * "unshared", and never runs itself.
   */
  | { type: "query"; id: number; sql: string; format: QueryFormat; rowLimit: number; timeoutMs: number; params?: (string | number)[]; stream: boolean; rideOn?: number }
  /** The hub's reader wants the next chunk of streamed query `id`. */
  | { type: "more"; id: number }
  /** The client went away: stop query `id`. */
  | { type: "cancel"; id: number }
  /** Run log compaction (the Compactor's job) here, beside the queries. */
  | { type: "compact"; id: number; job: CompactJob };

/** Query process → hub. */
export type FromEngine =
  | { type: "ready" }
  /** DuckDB could not be loaded or opened: why, just before the process exits. */
  | { type: "fatal"; error: string }
  /**
   * `cached`: the answer was kept from an identical query over the same data (result-cache.ts);
   * `shared`: it is the answer of an identical query that was running over the same data.
   */
  /**
   * The answer's body is the frame's raw bytes (frames.ts): text in its format, or a Parquet file's
   * bytes; none for a query that rode on query `answerOf`, whose body the hub has (one copy for all).
   */
  | { type: "result"; id: number; raw?: Uint8Array; rows: number; cached?: boolean; shared?: boolean; answerOf?: number }
  /** A streamed query has started (its columns are known). */
  | { type: "start"; id: number }
  | { type: "chunk"; id: number; text: string }
  | { type: "end"; id: number; rows: number }
  | { type: "error"; id: number; error: string; refused: boolean }
  /** Riding query `id` found no identical run reading the data it would read: the hub runs it as any other. */
  | { type: "unshared"; id: number }
  | { type: "compacted"; id: number; outcome: CompactionOutcome }
  | ({ type: "quarantined" } & Quarantined);

/** A time limit as a message gives it: "30 s", "250 ms". */
export function durationText(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`;
}

/** What a query stopped at its time limit of `timeoutMs` is told, by the hub or its query process. */
export function tookTooLong(timeoutMs: number): string {
  return `${TOOK_TOO_LONG} ${durationText(timeoutMs)} and was stopped`;
}

const TOOK_TOO_LONG = "the query took longer than";

/** True when a query's error is that it ran past its time limit (tookTooLong). */
export const timedOut = (error: string) => error.startsWith(TOOK_TOO_LONG);
