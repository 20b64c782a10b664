/**
 * Runs one query off the hub's thread: opens the sandboxed engine, runs the
 * SELECT, formats the result, answers once and is ended by its caller.
 */
import { formatResult, QueryEngine, QueryError } from "./engine.ts";
import type { QueryJob, QueryReply } from "./run-query.ts";

declare const self: Worker;

self.onmessage = async (e: MessageEvent<QueryJob>) => {
  const job = e.data;
  let engine: QueryEngine | null = null;
  let reply: QueryReply;
  try {
    engine = await QueryEngine.open(job.dirs);
    const result = await engine.query(job.sql, { rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params });
    reply = { ok: true, body: formatResult(result, job.format), rows: result.rows.length };
  } catch (err) {
    reply = { ok: false, error: (err as Error).message, refused: err instanceof QueryError };
  } finally {
    engine?.close();
  }
  self.postMessage(reply);
};
