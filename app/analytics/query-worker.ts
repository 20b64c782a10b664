/**
 * Runs one query off the hub's thread: opens the sandboxed engine, runs the
 * SELECT, formats the result, answers once and is ended by its caller.
 */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { formatResult, QueryEngine, QueryError } from "./engine.ts";
import type { QueryJob, QueryReply } from "./run-query.ts";

declare const self: Worker;

/** Streams rows as NDJSON or CSV text chunks: {type: "chunk"}…, then {type: "end"} or {type: "error"}. */
async function stream(job: QueryJob & { format: "ndjson" | "csv" }): Promise<void> {
  let engine: QueryEngine | null = null;
  try {
    engine = await QueryEngine.open(job.dirs);
    let header = job.format === "csv";
    await engine.streamRows(job.sql, { rowLimit: job.rowLimit, timeoutMs: job.timeoutMs }, (columns, rows) => {
      let text = formatResult({ columns, rows }, job.format);
      if (job.format === "csv") {
        // formatResult writes a header each time: keep the first only.
        if (!header) text = text.slice(text.indexOf("\n") + 1);
        header = false;
      }
      if (text) self.postMessage({ type: "chunk", text });
    });
    self.postMessage({ type: "end" });
  } catch (err) {
    self.postMessage({ type: "error", error: (err as Error).message, refused: err instanceof QueryError });
  } finally {
    engine?.close();
  }
}

self.onmessage = async (e: MessageEvent<QueryJob & { stream?: boolean }>) => {
  const job = e.data;
  if (job.stream && (job.format === "ndjson" || job.format === "csv")) return stream(job as QueryJob & { format: "ndjson" | "csv" });
  let engine: QueryEngine | null = null;
  let reply: QueryReply;
  // A Parquet download is written to a folder of its own (the only one this query may write to), read, and removed.
  const exportDir = job.format === "parquet" ? join(job.dirs.tempDir, "..", `export-${crypto.randomUUID()}`) : undefined;
  try {
    if (exportDir) mkdirSync(exportDir, { recursive: true });
    engine = await QueryEngine.open({ ...job.dirs, exportDir });
    if (exportDir) {
      const path = join(exportDir, "result.parquet");
      const rows = await engine.exportParquet(job.sql, path, job.timeoutMs);
      reply = { ok: true, body: new Uint8Array(readFileSync(path)), rows };
    } else {
      const result = await engine.query(job.sql, { rowLimit: job.rowLimit, timeoutMs: job.timeoutMs, params: job.params });
      reply = { ok: true, body: formatResult(result, job.format as Exclude<typeof job.format, "parquet">), rows: result.rows.length };
    }
  } catch (err) {
    reply = { ok: false, error: (err as Error).message, refused: err instanceof QueryError };
  } finally {
    engine?.close();
    if (exportDir) rmSync(exportDir, { recursive: true, force: true });
  }
  self.postMessage(reply);
};
