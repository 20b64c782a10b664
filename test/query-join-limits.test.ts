import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { findQueryPool } from "../app/analytics/run-query.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// A query that waits for an identical one's answer (query-join.test.ts) keeps its own time limit: it
// does not wait for a run with less time than it has, and after a cancelled run it is told its own limit.
// A joiner may hold a slot of its own (it came while the query process was starting) or ride on the run
// without one (run-query.ts); either way it keeps its own limit.
setDefaultTimeout(120_000);

const ENDLESS = "SELECT count(*) AS n FROM range(40000000000) t(i) WHERE i % 13 = 3";
/** Several seconds of CPU (SLOW of query-join.test.ts is 300M for about 1 s). */
const MEDIUM = "SELECT count(*)::BIGINT AS n FROM range(1500000000) t(i) WHERE i % 13 = 3";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ query_timeout_seconds: 4, query_concurrency: 2, query_processes: 1, query_cache_mb: 0 });
});
afterAll(async () => {
  await srv.close();
});

const pool = () => findQueryPool(join(srv.dataDir, "logs")) ?? { active: 0 };
const ask = (sql: string, signal?: AbortSignal) =>
  fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: srv.adminHeaders, signal });
const setTimeoutSeconds = async (s: number) => {
  const r = await fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ query_timeout_seconds: s }), headers: srv.adminHeaders });
  expect(r.ok).toBe(true);
};

describe("a query waiting for an identical one", () => {
  it("a joiner whose twin was cancelled late, then runs out of its own time, is told its own limit (4 s)", async () => {
    const leaving = new AbortController();
    const t0 = Date.now();
    const first = ask(ENDLESS, leaving.signal).catch((e: Error) => e);
    await waitFor(() => pool().active === 1, "the first query to run");
    await Bun.sleep(200);
    const second = ask(ENDLESS).catch((e: Error) => e);
    await waitFor(() => pool().active === 2 || (pool() as { riders?: number }).riders === 1, "the second query to reach the query process");
    await Bun.sleep(3_500 - (Date.now() - t0));
    leaving.abort();
    expect(await first).toBeInstanceOf(Error);
    const r = (await second) as Response;
    const body = (await r.json()) as { error: { message: string } };
    expect(r.status).toBe(400);
    expect(body.error.message).toContain("took longer than 4 s");
    await waitFor(() => pool().active === 0, "both slots to be free", 10_000);
  });

  it("a joiner with a longer limit than the run it joined does not fail at that run's shorter limit", async () => {
    await setTimeoutSeconds(2);
    try {
      const first = ask(MEDIUM).catch((e: Error) => e);
      await waitFor(() => pool().active === 1, "the first query to run");
      await Bun.sleep(200);
      await setTimeoutSeconds(30);
        const second = ask(MEDIUM).catch((e: Error) => e);
      await waitFor(() => pool().active === 2, "the second query to get its slot");
      const f = (await first) as Response;
      expect(f.status).toBe(400); // its own 2 s limit
      await f.text();
      const r = (await second) as Response;
      const text = await r.text();
      expect(r.status).toBe(200);
      expect(JSON.parse(text)).toEqual([{ n: "115384616" }]); // BIGINT as text in JSON
    } finally {
      await setTimeoutSeconds(4);
    }
  });
});
