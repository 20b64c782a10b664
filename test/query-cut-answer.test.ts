import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { findQueryPool } from "../app/analytics/run-query.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

setDefaultTimeout(120_000);

// 11,000 wide rows (41 columns) over a long scan: DuckDB's streamed result is ready once its buffer (about 1 MB) is full (8,000 of these rows fill it, 4,000 do not),
// and most of the work is done as the rows are fetched. Depends on the log (shared and cached answers).
const WIDE = "SELECT (SELECT count(*) FROM messages WHERE stream = 'cut')::INT AS n, i + 0 AS c0, i + 1 AS c1, i + 2 AS c2, i + 3 AS c3, i + 4 AS c4, i + 5 AS c5, i + 6 AS c6, i + 7 AS c7, i + 8 AS c8, i + 9 AS c9, i + 10 AS c10, i + 11 AS c11, i + 12 AS c12, i + 13 AS c13, i + 14 AS c14, i + 15 AS c15, i + 16 AS c16, i + 17 AS c17, i + 18 AS c18, i + 19 AS c19, i + 20 AS c20, i + 21 AS c21, i + 22 AS c22, i + 23 AS c23, i + 24 AS c24, i + 25 AS c25, i + 26 AS c26, i + 27 AS c27, i + 28 AS c28, i + 29 AS c29, i + 30 AS c30, i + 31 AS c31, i + 32 AS c32, i + 33 AS c33, i + 34 AS c34, i + 35 AS c35, i + 36 AS c36, i + 37 AS c37, i + 38 AS c38, i + 39 AS c39 FROM range(1500000000) t(i) WHERE i < 8000 OR i % 500000 = 0";
const ROWS = 10_999; // 8,000 at once (enough to fill the buffer, so the streamed result is ready at once), then one per 500,000 of a scan that takes seconds even on a fast machine (it is stopped 1 s in, as its rows are fetched)

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ query_timeout_seconds: 60, query_concurrency: 2, query_processes: 1, query_cache_mb: 64 });
  expect((await fetch(`${srv.url}/api/streams/cut/messages`, { method: "POST", body: "one", headers: srv.adminHeaders })).status).toBeLessThan(300);
});
afterAll(async () => {
  await srv.close();
});

const pool = () => findQueryPool(join(srv.dataDir, "logs")) ?? { active: 0 };
const ask = (sql: string, signal?: AbortSignal) =>
  fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: srv.adminHeaders, signal });

describe("a run stopped while its rows are fetched gives no cut answer", () => {
  it("does not give its cut answer to the identical query that waited for it, nor keep it for later ones", async () => {
    const leaving = new AbortController();
    const first = ask(WIDE, leaving.signal).catch((e: Error) => e);
    await waitFor(() => pool().active === 1, "the first query to run");
    await Bun.sleep(200);
    const second = ask(WIDE);
    await waitFor(() => pool().active === 2, "the second query to get its slot");
    await Bun.sleep(1000); // the first run is past DuckDB's start, fetching rows
    leaving.abort();
    expect(await first).toBeInstanceOf(Error);
    const r = await second;
    expect(r.status).toBe(200);
    const rows = (await r.json()) as unknown[];
    const again = await ask(WIDE);
    const text = await again.text();
    expect({ waited: rows.length, later: again.status === 200 ? (JSON.parse(text) as unknown[]).length : `${again.status} ${text}` }).toEqual({ waited: ROWS, later: ROWS });
  });

  it("a query past its time limit as its rows are fetched fails with the time limit's error, JSON or streamed CSV, rather than answer cut", async () => {
    const endless = WIDE.replace("range(1500000000)", "range(3000000000)").replace("i % 500000", "i % 20000").replace("'cut'", "'cut2'");
    const r = await fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ query_timeout_seconds: 1 }), headers: srv.adminHeaders });
    expect(r.ok).toBe(true);
    try {
      const json = await ask(endless);
      const jsonText = await json.text();
      const csv = await fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql: endless + " ", format: "csv" }), headers: srv.adminHeaders });
      const csvText = await csv.text();
      const csvLines = csvText.split("\n").length;
      expect({ status: json.status, json: json.status === 200 ? `${(JSON.parse(jsonText) as unknown[]).length} rows` : jsonText.includes("took longer than 1 s"), csvTimeLimitSaid: csvText.includes("took longer than 1 s"), csvLines: csvLines > 10 ? "many" : csvLines })
        .toEqual({ status: 400, json: true, csvTimeLimitSaid: true, csvLines: expect.anything() });
    } finally {
      await fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ query_timeout_seconds: 60 }), headers: srv.adminHeaders });
    }
  });
});
