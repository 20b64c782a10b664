import type { Logger } from "../app/core/logger.ts";
import { hasEmbeddedNative, prepareNative } from "./load.ts";

/**
 * At `serve` start in the compiled binary: unpacks DuckDB's native library, or
 * checks the copy already unpacked (size and SHA-256), so the first query or
 * compaction does not pay for it and a problem shows in the log at once. DuckDB
 * missing is a warning, not a stop: the hub works without it.
 */
export function prepareNativeAtStart(logger: Logger): void {
  if (!hasEmbeddedNative()) return;
  const started = performance.now();
  try {
    const n = prepareNative("hash")!;
    const ms = Math.round(performance.now() - started);
    if (n.unpacked.length > 0) logger.info("duckdb native library unpacked", { dir: n.dir, files: n.unpacked.join(","), ms });
    else logger.info("duckdb native library reused", { dir: n.dir, checked: n.checked, ms });
  } catch (err) {
    logger.warn("DuckDB is not available: queries, history from the log and compaction will fail", { error: err });
  }
}
