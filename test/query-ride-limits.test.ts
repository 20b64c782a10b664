import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { queryLimits } from "../app/analytics/limits.ts";
import { closeQueryPool, findQueryPool, runQueryInWorker } from "../app/analytics/run-query.ts";
import { processAlive } from "../app/core/self-process.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// The limits of riding (run-query.ts ride), found by an attacking review: a query riding when the server
// stops starts nothing after the stop; a query asked after a settings change is not answered by a process
// of the old settings; and riders hold no copy of the answer of their own (memory stays bounded by the slots).
setDefaultTimeout(60_000);

/** Longer than the 2 s a stopping pool waits for its processes (it kills them then), over the log. */
const SLOW = "SELECT count(*)::INT AS n, (SELECT count(*)::INT FROM range(40000000000) t(i) WHERE i % 13 = 3) AS slow FROM messages WHERE stream = 'ride'";

let srv: TestServer | null = null;
let logsDir = "";
afterEach(async () => {
  // Whatever the server left behind (a pool made after its stop): not to outlive the test.
  if (logsDir) await closeQueryPool(logsDir);
  await srv?.close().catch(() => {});
  srv = null;
});

describe("riding at server stop", () => {
  it("a query riding when the server stops does not start a new query pool and process after the stop", async () => {
    srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 2, query_processes: 1, query_cache_mb: 0 });
    const s = srv;
    logsDir = join(s.dataDir, "logs");
    const ask = (sql: string) => fetch(`${s.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: s.adminHeaders }).catch((e: Error) => e);
    expect((await fetch(`${s.url}/api/streams/ride/messages`, { method: "POST", body: "one", headers: s.adminHeaders })).status).toBeLessThan(300);
    expect(((await ask("SELECT 1 AS x")) as Response).status).toBe(200); // the process up
    const pool = findQueryPool(logsDir)!;
    const first = ask(SLOW);
    await waitFor(() => pool.active === 1, "the first query to run");
    await Bun.sleep(200);
    const second = ask(SLOW);
    await waitFor(() => pool.riders === 1, "the second query to ride on the first");
    const before = pool.processes().map((p) => p.pid);

    await s.close(); // closeQueryPool: the pool closed and forgotten, its processes stopped
    srv = null;
    await Promise.all([first, second]);
    await Bun.sleep(1000);
    expect(pool.riders).toBe(0);

    // After the stop there is no query pool for this log any more, and no query process of it runs.
    const after = findQueryPool(logsDir);
    const leaked = after ? after.processes().map((p) => p.pid).filter((pid) => !before.includes(pid) && processAlive(pid)) : [];
    expect({ pool: after === undefined, leaked }).toEqual({ pool: true, leaked: [] });
  });
});

describe("riding after a settings change", () => {
  it("a query asked after query_result_mb was lowered is not answered over the new cap by a process of the old settings", async () => {
    srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 2, query_processes: 1, query_cache_mb: 0, query_result_mb: 2 });
    const s = srv;
    logsDir = join(s.dataDir, "logs");
    const ask = (sql: string) => fetch(`${s.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers: s.adminHeaders });
    expect((await ask("SELECT 1 AS x")).status).toBe(200); // the process up
    const pool = findQueryPool(logsDir)!;
    // About 1.4 MB of JSON (under 2 MB, over 1 MB), after about a second of CPU.
    const BIG = "SELECT i, repeat('x', 100) AS s FROM range(12000) t(i) WHERE (SELECT count(*) FROM range(300000000) u(j) WHERE j % 13 = 3) > 0";
    const first = ask(BIG);
    await waitFor(() => pool.active === 1, "the first query to run");
    await Bun.sleep(200);
    const r = await fetch(`${s.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ query_result_mb: 1 }), headers: s.adminHeaders });
    expect(r.ok).toBe(true);
    // Asked after the change: its answer may be at most 1 MB.
    const second = ask(BIG);
    // It does not ride on the first (a process of the old settings): it gets a slot on one of the new.
    await waitFor(() => pool.active === 2, "the second query to get its slot");
    expect(pool.riders).toBe(0);
    const f = await first;
    expect(f.status).toBe(200); // asked under 2 MB
    await f.text();
    const a = await second;
    const text = await a.text();
    expect({ status: a.status, bytes: a.status === 200 ? text.length : 0 }).toEqual({ status: 400, bytes: 0 });
    expect(text).toContain("larger than 1 MB");
  });
});

describe("riding and memory", () => {
  it("8 identical queries at once hold one copy of the answer: the seven riding get the first's body", async () => {
    srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 2, query_processes: 1, query_cache_mb: 0 });
    const s = srv;
    logsDir = join(s.dataDir, "logs");
    const job = () => ({ sql: "SELECT i, repeat('x', 100) AS s FROM range(2000) t(i) WHERE (SELECT count(*) FROM range(300000000) u(j) WHERE j % 13 = 3) > 0", format: "json" as const, rowLimit: 100_000, ...queryLimits({ dataDir: s.dataDir, nodeId: "test-node" }, s.store.settings) });
    expect((await runQueryInWorker({ ...job(), sql: "SELECT 1 AS x" })).ok).toBe(true); // the process up
    const pool = findQueryPool(logsDir)!;
    const first = runQueryInWorker(job());
    await waitFor(() => pool.active === 1, "the first query to run");
    await Bun.sleep(200);
    const others = Array.from({ length: 7 }, () => runQueryInWorker(job()));
    await waitFor(() => pool.riders === 7, "seven queries to ride on the first");
    const replies = await Promise.all([first, ...others]);
    const bodies = new Set<ArrayBufferLike>();
    for (const r of replies) {
      expect(r.ok).toBe(true);
      if (r.ok) bodies.add(r.body.buffer);
    }
    // Before riding: the first and one joiner in the other slot, and the six queued sharing one reply.
    expect(bodies.size).toBe(1);
  });
});
