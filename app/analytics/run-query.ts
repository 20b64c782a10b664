import type { QueryEngineOptions } from "./engine.ts";

/** One query for the worker. */
export interface QueryJob {
  sql: string;
  format: "table" | "csv" | "json" | "ndjson" | "parquet";
  rowLimit: number;
  timeoutMs: number;
  /** Values for `$1`, `$2`, … in `sql` (never pasted into the SQL text). */
  params?: (string | number)[];
  dirs: QueryEngineOptions;
}

/** The worker's answer: the formatted result, or why not (refused: the query's fault, not the server's). */
export type QueryReply = { ok: true; body: string | Uint8Array; rows: number } | { ok: false; error: string; refused: boolean };

/**
 * Runs a query in a fresh worker (DuckDB never loads on the hub's thread) and
 * ends the worker after; a worker that outlives the query's time limit by 5 s is
 * ended and the query reported as stopped.
 */
export function runQueryInWorker(job: QueryJob): Promise<QueryReply> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL("./query-worker.ts", import.meta.url).href);
    const finish = (r: QueryReply) => {
      clearTimeout(limit);
      worker.terminate();
      resolve(r);
    };
    const limit = setTimeout(() => finish({ ok: false, error: `the query took longer than ${Math.round(job.timeoutMs / 1000)} s and was stopped`, refused: true }), job.timeoutMs + 5000);
    worker.onmessage = (e: MessageEvent<QueryReply>) => finish(e.data);
    worker.onerror = (e) => finish({ ok: false, error: e.message || "the query worker failed", refused: false });
    worker.postMessage(job);
  });
}
