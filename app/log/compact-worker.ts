/**
 * The compaction worker: runs `compactSegments` off the hub's thread (DuckDB is
 * loaded here only, so the hub's idle memory stays small). One message in
 * ({segments, logsDir}), one out ({ok, result} or {ok: false, error}).
 */
import { compactSegments } from "./compaction.ts";
import { mergeClosedPartitions } from "./merge.ts";
import { enforceParquetRetention } from "./retention.ts";

declare const self: Worker;

self.onmessage = async (e: MessageEvent<{ segments: string[]; logsDir: string; retention: { days: number; bytes: number } }>) => {
  try {
    const result = await compactSegments(e.data.segments, e.data.logsDir);
    await mergeClosedPartitions(e.data.logsDir, new Date().toISOString().slice(0, 10));
    const removed = enforceParquetRetention(e.data.logsDir, e.data.retention);
    self.postMessage({ ok: true, result, removed });
  } catch (err) {
    self.postMessage({ ok: false, error: (err as Error).message });
  }
};
