/**
 * DuckDB's node API ends a streamed result it was interrupted in (a cancel, or
 * the time limit) as if it were complete: fetchChunk gives no chunk and no
 * error. Each query here is still producing rows when it is stopped, and must
 * fail with the reason, not answer with the rows it had so far.
 */
import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { QueryEngine } from "../app/analytics/engine.ts";
import { tempDir } from "./support/server.ts";

setDefaultTimeout(120_000);

const open = (dir: string) => QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir: join(dir, "spool"), tempDir: join(dir, "tmp", "duckdb") });

// Many rows, produced fast enough that DuckDB's streamed result is ready at once, and many chunks to fetch after.
const MANY = "SELECT i FROM range(3000000000) t(i) WHERE i % 100 = 0";
// 41 columns: DuckDB's streamed result buffer (976 KiB) fills after a few thousand rows, the rest is done as chunks are fetched.
const WIDE = "SELECT i + 0 AS c0, i + 1 AS c1, i + 2 AS c2, i + 3 AS c3, i + 4 AS c4, i + 5 AS c5, i + 6 AS c6, i + 7 AS c7, i + 8 AS c8, i + 9 AS c9, i + 10 AS c10, i + 11 AS c11, i + 12 AS c12, i + 13 AS c13, i + 14 AS c14, i + 15 AS c15, i + 16 AS c16, i + 17 AS c17, i + 18 AS c18, i + 19 AS c19, i + 20 AS c20, i + 21 AS c21, i + 22 AS c22, i + 23 AS c23, i + 24 AS c24, i + 25 AS c25, i + 26 AS c26, i + 27 AS c27, i + 28 AS c28, i + 29 AS c29, i + 30 AS c30, i + 31 AS c31, i + 32 AS c32, i + 33 AS c33, i + 34 AS c34, i + 35 AS c35, i + 36 AS c36, i + 37 AS c37, i + 38 AS c38, i + 39 AS c39 FROM range(3000000000) t(i) WHERE i < 4000 OR i % 20000 = 0";

/** What `run` gives on a fresh engine: "answered with …" as it tells, or "error: <message>". */
async function outcomeOf(run: (engine: QueryEngine) => Promise<string>): Promise<string> {
  const tmp = tempDir();
  const engine = await open(tmp.dir);
  try {
    return await run(engine);
  } catch (err) {
    return `error: ${(err as Error).message}`;
  } finally {
    engine.close();
    tmp.remove();
  }
}

describe("an interrupt that lands while a streamed result is fetched (DuckDB then ends it as if complete)", () => {
  it("query(): a time limit that passes while rows are read is an error, not a cut answer", async () => {
    const outcome = await outcomeOf(async (engine) => `answered with ${(await engine.query(MANY, { timeoutMs: 1500, rowLimit: 50_000_000 })).rows.length} rows of 30000000`);
    expect(outcome).toMatch(/^error: .*took longer than/);
  });

  it("streamRows(whole): a time limit that passes while rows are fetched is an error, not a cut answer", async () => {
    const outcome = await outcomeOf(async (engine) => `answered with ${await engine.streamRows(WIDE, { rowLimit: 50_000_000, timeoutMs: 1500, whole: true }, () => {})} rows of 150000`);
    expect(outcome).toMatch(/^error: .*took longer than/);
  });

  it("streamRows: a cancel that lands while a chunk is fetched is an error, not a cut answer", async () => {
    const outcome = await outcomeOf(async (engine) => {
      let cancel: (() => void) | undefined;
      let rows = 0;
      const sent = await engine.streamRows(WIDE, { rowLimit: 50_000_000, timeoutMs: 60_000, whole: true, onInterrupt: (f) => { cancel = f; } }, (_c, r) => {
        if (rows === 0 && r.length > 0) setTimeout(() => cancel!(), 500); // lands during a later fetch (each takes about 0.5 s)
        rows += r.length;
      });
      return `answered with ${sent} rows of 150000`;
    });
    expect(outcome).toBe("error: the query was cancelled");
  });
});
