import { join } from "node:path";
import type { Settings } from "../config/settings.ts";
import type { QueryEngineOptions } from "./engine.ts";
import { DEFAULT_POOL_LIMITS, type QueryPoolLimits } from "./query-pool.ts";

/** Most rows an HTTP query (API or admin UI) may return. */
export const HTTP_ROW_LIMIT = 100_000;

/** Where the query engine finds the log under the data dir, whose log it is, and how big it may be (settings query_*). */
function queryDirs({ dataDir, nodeId }: LogOwner, s: Settings): QueryEngineOptions & { limits: QueryPoolLimits } {
  return {
    nodeId, logsDir: join(dataDir, "logs"), spoolDir: join(dataDir, "spool"), tempDir: join(dataDir, "tmp", "duckdb"), threads: s.query_threads, memoryLimit: `${s.query_memory_mb}MB`,
    limits: {
      processes: s.query_processes, concurrency: s.query_concurrency, queue: s.query_queue, perClient: s.query_per_client,
      resultBytes: s.query_result_mb * 1048576, cacheBytes: s.query_cache_mb * 1048576, rssBytes: s.query_rss_mb * 1048576, idleMs: s.query_idle_seconds * 1000, yieldMs: s.query_yield_ms, graceMs: DEFAULT_POOL_LIMITS.graceMs,
    },
  };
}

/** The data dir holding a log, and the node whose log it is (its rows' `node` column). */
export interface LogOwner {
  dataDir: string;
  nodeId: string;
}

/** What every query asked over HTTP runs with: the log's folders and the query_timeout_seconds limit. */
export function queryLimits(owner: LogOwner, s: Settings): { timeoutMs: number; dirs: QueryEngineOptions & { limits: QueryPoolLimits } } {
  return { timeoutMs: s.query_timeout_seconds * 1000, dirs: queryDirs(owner, s) };
}
