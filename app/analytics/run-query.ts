import type { QueryEngineOptions } from "./engine.ts";

/** One query for the worker. */
export interface QueryJob {
  sql: string;
  /** grid: JSON {columns, types, rows: [[…]]} for the admin UI's table and chart. */
  format: "table" | "csv" | "json" | "ndjson" | "parquet" | "grid";
  rowLimit: number;
  timeoutMs: number;
  /** Values for `$1`, `$2`, … in `sql` (never pasted into the SQL text). */
  params?: (string | number)[];
  dirs: QueryEngineOptions;
}

/** The worker's answer: the formatted result, or why not (refused: the query's fault; busy: too many at once). */
export type QueryReply = { ok: true; body: string | Uint8Array; rows: number } | { ok: false; error: string; refused: boolean; busy?: boolean };

/** Most query workers at once: each holds a DuckDB, and a small box has little memory to spare. */
export const MAX_CONCURRENT_QUERIES = 2;
let running = 0;

/** Query workers running now. */
export function activeQueries(): number {
  return running;
}

/** Takes a slot for a query worker, or says why not. */
function acquire(): QueryReply | null {
  if (running >= MAX_CONCURRENT_QUERIES) return { ok: false, error: `${MAX_CONCURRENT_QUERIES} queries are running already; try again in a moment`, refused: false, busy: true };
  running++;
  return null;
}

/**
 * Runs a query in a fresh worker (DuckDB never loads on the hub's thread) and
 * ends the worker after; a worker that outlives the query's time limit by 5 s is
 * ended and the query reported as stopped.
 */
export function runQueryInWorker(job: QueryJob): Promise<QueryReply> {
  const busy = acquire();
  if (busy) return Promise.resolve(busy);
  return new Promise((resolve) => {
    const worker = new Worker(new URL("./query-worker.ts", import.meta.url).href);
    const finish = (r: QueryReply) => {
      clearTimeout(limit);
      worker.terminate();
      running--;
      resolve(r);
    };
    const limit = setTimeout(() => finish({ ok: false, error: `the query took longer than ${Math.round(job.timeoutMs / 1000)} s and was stopped`, refused: true }), job.timeoutMs + 5000);
    worker.onmessage = (e: MessageEvent<QueryReply>) => finish(e.data);
    worker.onerror = (e) => finish({ ok: false, error: e.message || "the query worker failed", refused: false });
    worker.postMessage(job);
  });
}

/** A streamed answer: the text as it comes, or an error before anything came. */
export type StreamReply = { ok: true; body: ReadableStream<Uint8Array> } | { ok: false; error: string; refused: boolean; busy?: boolean };

/**
 * Runs a query in a fresh worker and streams its rows (NDJSON or CSV) as DuckDB
 * produces them. An error before the first rows is returned as such; one after
 * (row or time limit) ends the stream with a last line saying so
 * (`{"error": …}` in NDJSON, `# error: …` in CSV).
 */
export function streamQueryInWorker(job: QueryJob & { format: "ndjson" | "csv" }): Promise<StreamReply> {
  const busy = acquire();
  if (busy) return Promise.resolve(busy as StreamReply);
  return new Promise((resolve) => {
    const worker = new Worker(new URL("./query-worker.ts", import.meta.url).href);
    const encoder = new TextEncoder();
    let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
    let started = false;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => { controller = c; },
      cancel: () => finish(),
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      worker.terminate();
      running--;
    };
    const fail = (error: string, refused: boolean) => {
      if (!started) {
        finish();
        resolve({ ok: false, error, refused });
        return;
      }
      controller?.enqueue(encoder.encode(job.format === "ndjson" ? `${JSON.stringify({ error })}\n` : `# error: ${error}\n`));
      controller?.close();
      finish();
    };
    const limit = setTimeout(() => fail(`the query took longer than ${Math.round(job.timeoutMs / 1000)} s and was stopped`, true), job.timeoutMs + 5000);
    worker.onmessage = (e: MessageEvent<{ type: "chunk"; text: string } | { type: "end" } | { type: "error"; error: string; refused: boolean }>) => {
      const m = e.data;
      if (m.type === "error") return fail(m.error, m.refused);
      if (!started) {
        started = true;
        resolve({ ok: true, body });
      }
      if (m.type === "chunk") controller?.enqueue(encoder.encode(m.text));
      else {
        controller?.close();
        finish();
      }
    };
    worker.onerror = (e) => fail(e.message || "the query worker failed", false);
    worker.postMessage({ ...job, stream: true });
  });
}
