import { copyFileSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { NODE_ID, NODE_ID_RULE, resolveStartupConfig, startupParseOptions, type StartupConfig } from "../config/startup.ts";
import { RemoteCache, type RemoteFilter } from "../log/remote-cache.ts";
import { offloadCredentials, s3Client, s3Target, storeError } from "../log/s3-store.ts";
import { openOwnStore } from "./data-dir.ts";
import { UsageError } from "../core/errors.ts";
import { unpackNativeUnder } from "../../native/load.ts";
import { parseCommandArgs, type Command } from "./command.ts";

const FORMATS = ["table", "csv", "json", "ndjson", "parquet"] as const;

/** `switchyard query "SQL"`: SQL over the durable log, read-only. */
export const query: Command = {
  name: "query",
  summary: "run SQL over the durable log (the view messages), read-only",
  usage: `Usage: switchyard query "SELECT …" [--format table|csv|json|ndjson|parquet] [--output FILE] [--limit N] [--timeout S] [--data-dir DIR]
       switchyard query --remote "SELECT …" [--node ID]… [--stream NAME]… [--since YYYY-MM-DD] [--until YYYY-MM-DD] [same options]

Runs one SELECT over the view messages(ts, stream, seq, origin, kind, data, date, node):
the Parquet files in DATA_DIR/logs and the records not yet compacted in
DATA_DIR/spool (node: this node's id, --node-id). The query may read the log
and nothing else.

With --remote, the view is the log offloaded to S3 by every node (the bucket
and prefix of the offload_* settings; node, stream and date from the keys):
the partitions --node, --stream, --since and --until select are downloaded into
DATA_DIR/remote-cache (at most offload_cache_mb, least recently used out) and
read there. Credentials as the server's: SWITCHYARD_S3_* or AWS_* variables,
else those stored in the settings store.

  switchyard query "SELECT stream, count(*) FROM messages GROUP BY 1"
  switchyard query --remote --since 2026-12-01 "SELECT node, count(*) FROM messages GROUP BY 1"`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("query", argv, {
      ...startupParseOptions, format: { type: "string" }, output: { type: "string" }, limit: { type: "string" }, timeout: { type: "string" },
      remote: { type: "boolean" }, node: { type: "string", multiple: true }, stream: { type: "string", multiple: true }, since: { type: "string" }, until: { type: "string" },
    }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    if (positionals.length !== 1) throw new UsageError(`query: give the SQL as one argument (in quotes); got ${positionals.length}`);
    const format = (values.format ?? "table") as (typeof FORMATS)[number];
    if (!FORMATS.includes(format)) throw new UsageError(`query: --format: ${JSON.stringify(values.format)} is not valid; allowed: ${FORMATS.join(", ")}`);
    const limit = values.limit === undefined ? 100_000 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000_000) throw new UsageError(`query: --limit: ${JSON.stringify(values.limit)} is not valid; allowed: a whole number from 1 to 10000000`);
    const timeout = values.timeout === undefined ? 30 : Number(values.timeout);
    if (!(timeout > 0 && timeout <= 3600)) throw new UsageError(`query: --timeout: ${JSON.stringify(values.timeout)} is not valid; allowed: seconds from 1 to 3600`);
    if (format === "parquet" && !values.output) throw new UsageError("query: --format parquet needs --output FILE");
    if (!values.remote && (values.node?.length || values.stream?.length || values.since || values.until)) throw new UsageError("query: --node, --stream, --since and --until select offloaded partitions; use them with --remote");
    for (const [name, v] of [["--since", values.since], ["--until", values.until]] as const) {
      if (v !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(v)) throw new UsageError(`query: ${name}: ${JSON.stringify(v)} is not a date; allowed: YYYY-MM-DD (UTC)`);
    }
    for (const n of values.node ?? []) if (!NODE_ID.test(n)) throw new UsageError(`query: --node: ${JSON.stringify(n)} is not a node id; allowed: ${NODE_ID_RULE}`);
    const { config } = resolveStartupConfig(values, io.env);
    let remote: { dir: string; files: string[] } | undefined;
    if (values.remote) {
      try {
        remote = await fetchRemote(config, { nodes: values.node, streams: values.stream, since: values.since, until: values.until });
      } catch (err) {
        io.err(`query failed: ${(err as Error).message}\n`);
        return 1;
      }
    }
    unpackNativeUnder(config.dataDir, io.env);
    // DuckDB is loaded only by the commands that query: the hub never carries it.
    const { formatResult, QueryEngine, QueryError } = await import("../analytics/engine.ts");
    const output = values.output ? resolve(values.output) : undefined;
    // DuckDB may write (and so read) only a fresh private folder, never the output's: a query
    // must not read the other files there. The finished file is moved to --output afterwards.
    const exportDir = format === "parquet" ? mkdtempSync(join(tmpdir(), "switchyard-export-")) : undefined;
    let engine;
    try {
      engine = await QueryEngine.open({
        logsDir: join(config.dataDir, "logs"), spoolDir: join(config.dataDir, "spool"), tempDir: join(config.dataDir, "tmp", "duckdb"), exportDir, nodeId: config.nodeId, remote,
      }, (q) => io.err(`warning: ${q.from} is unreadable (${q.reason}); moved to ${q.to || "(could not be moved)"}
`));
    } catch (err) {
      if (exportDir) rmSync(exportDir, { recursive: true, force: true });
      io.err(`query failed: ${(err as Error).message}
`);
      return 1;
    }
    try {
      if (format === "parquet") {
        const staged = join(exportDir!, "result.parquet");
        const rows = await engine.exportParquet(positionals[0]!, staged, timeout * 1000);
        try {
          moveFile(staged, output!);
        } catch (err) {
          io.err(`query failed: cannot write --output ${output}: ${(err as Error).message}\n`);
          return 1;
        }
        io.err(`wrote ${rows} rows to ${output}\n`);
        return 0;
      }
      const result = await engine.query(positionals[0]!, { rowLimit: limit, timeoutMs: timeout * 1000 });
      const text = formatResult(result, format);
      if (values.output) writeFileSync(values.output, text);
      else io.out(text);
      return 0;
    } catch (err) {
      // Never a stack trace: whatever went wrong is said in one line.
      io.err(`query failed: ${err instanceof QueryError ? err.message : (err as Error).message}\n`);
      return 1;
    } finally {
      engine.close();
      if (exportDir) rmSync(exportDir, { recursive: true, force: true });
    }
  },
};

/** Moves a file, copying when the two paths are on different file systems. */
function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    copyFileSync(from, to);
    unlinkSync(from);
  }
}

/**
 * Lists the offloaded partitions `filter` selects and brings them into the
 * remote cache: the files the view reads. The bucket, prefix and cache size are
 * the settings'; the credentials the environment's or the stored ones.
 */
async function fetchRemote(config: StartupConfig, filter: RemoteFilter): Promise<{ dir: string; files: string[] }> {
  const store = openOwnStore(config.dataDir, "query --remote", true);
  let target;
  let cacheMb;
  try {
    const s = store.settings;
    if (s.offload_bucket === "") throw new Error("no bucket is set: set offload_bucket (and offload_s3_url, offload_prefix) first");
    target = s3Target(s, offloadCredentials(config.s3Credentials, store));
    cacheMb = s.offload_cache_mb;
  } finally {
    store.close();
  }
  const client = s3Client(target);
  const cache = new RemoteCache(join(config.dataDir, "remote-cache"), cacheMb * 1048576);
  try {
    const { objects } = await RemoteCache.list(client, target.prefix, filter);
    return { dir: cache.dir, files: await cache.fetch(client, target.prefix, objects) };
  } catch (err) {
    throw new Error(`reading the offloaded log from ${target.bucket}${target.endpoint ? ` at ${target.endpoint}` : ""} failed: ${storeError(err, target.credentials)}`);
  }
}
