/**
 * What the tests of the quiet-stream skip (stream-scope.ts, QueryEngine.quietFor)
 * share: the scope DuckDB's parser gives a query, spool records, and a spool of
 * one segment with an engine over it.
 */
import { afterAll, beforeAll } from "bun:test";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { join } from "node:path";
import { QueryEngine } from "../../app/analytics/engine.ts";
import { planStreamScope, scopeStreams } from "../../app/analytics/stream-scope.ts";
import { silentLogger } from "../../app/core/logger.ts";
import { encodeRecord } from "../../app/log/record.ts";
import { Spool } from "../../app/log/spool.ts";
import { tempDir } from "./server.ts";

/**
 * A plain DuckDB, open while the calling test file runs (its hooks are
 * registered here): `streamsOf` gives the streams `sql` reads as the engine
 * works them out (sorted; null: no scope), `run` runs SQL on it.
 */
export function plainDuckDB() {
  let db: DuckDBInstance;
  let conn: DuckDBConnection;
  beforeAll(async () => {
    db = await DuckDBInstance.create(":memory:");
    conn = await db.connect();
  });
  afterAll(() => {
    conn.closeSync();
    db.closeSync();
  });
  return {
    async streamsOf(sql: string, params?: unknown[]): Promise<string[] | null> {
      const parsed = await conn.runAndReadAll("SELECT json_serialize_sql(?::VARCHAR)", [sql]);
      const scope = planStreamScope(JSON.parse(String(parsed.getRows()[0]![0])));
      const streams = scope && scopeStreams(scope, params);
      return streams ? [...streams].sort() : null;
    },
    run: (sql: string) => conn.run(sql),
  };
}

export const DAY = Date.UTC(2026, 10, 23) * 1000; // µs
export const spoolOptions = { segmentBytes: 1 << 24, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger };
export const record = (stream: string, seq: number, origin = "t") => encodeRecord({ stream, ts: DAY + seq, seq, origin, data: `{"v":${seq}}`, size: 8 });
export const records = (stream: string, from: number, count: number, origin = "t") => Buffer.concat(Array.from({ length: count }, (_, k) => record(stream, from + k, origin)));

/**
 * A spool of one segment holding 50 records each of quiet and other (origin
 * t), and an engine over it; `count` gives a stream's messages, `n` the n
 * column of a query's first row, `fresh` that of a fresh engine (a full read
 * of the spool).
 */
export async function quietSpool() {
  const tmp = tempDir();
  const spoolDir = join(tmp.dir, "spool");
  const spool = Spool.open(spoolDir, spoolOptions);
  for (let i = 1; i <= 100; i++) spool.append({ stream: i % 2 ? "quiet" : "other", ts: DAY + i, seq: i, origin: "t", data: `{"v":${i}}`, size: 8 });
  spool.close();
  const segment = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
  const open = () => QueryEngine.open({ logsDir: join(tmp.dir, "logs"), spoolDir, tempDir: join(tmp.dir, "tmp", "duckdb") });
  const engine = await open();
  const count = async (stream: string) => Number((await engine.query(`SELECT count(*) AS n FROM messages WHERE stream = '${stream}'`)).rows[0]!.n);
  const n = async (sql: string, params?: (string | number | bigint)[]) => Number((await engine.query(sql, { params })).rows[0]!.n);
  const fresh = async (sql: string, params?: (string | number | bigint)[]) => {
    const other = await open();
    try {
      return Number((await other.query(sql, { params })).rows[0]!.n);
    } finally {
      other.close();
    }
  };
  return { tmp, spoolDir, segment, engine, count, n, fresh };
}
