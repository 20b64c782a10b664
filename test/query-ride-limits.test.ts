import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { queryLimits } from "../app/analytics/limits.ts";
import { closeQueryPool, findQueryPool, runQueryInWorker } from "../app/analytics/run-query.ts";
import { processAlive } from "../app/core/self-process.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// The limits of riding (run-query.ts ride), found by two attacking reviews: a query riding when the server
// stops starts nothing after the stop; a query asked after a settings change is not answered by a process
// of the old settings; riders hold no copy of the answer of their own (memory stays bounded by the slots);
// identical queries of one client are not refused for riding; and a rider whose client leaves gives its
// place back at once.
setDefaultTimeout(90_000);

/** Longer than the 2 s a stopping pool waits for its processes (it kills them then), over the log. */
const SLOW = "SELECT count(*)::INT AS n, (SELECT count(*)::INT FROM range(40000000000) t(i) WHERE i % 13 = 3) AS slow FROM messages WHERE stream = 'ride'";

let srv: TestServer | null = null;
let logsDir = "";
/** A query process a test stopped (SIGSTOP), to be let go on after it. */
let stopped: number | null = null;
afterEach(async () => {
  if (stopped !== null) {
    try { process.kill(stopped, "SIGCONT"); } catch { /* gone */ }
    stopped = null;
  }
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

/**
 * A server whose one query slot is held by a history query of this client
 * (127.0.0.1) over stream hist (a, b, c), its query process stopped (SIGSTOP,
 * let go on by `go` or after the test): the first query, and a history query
 * maker (`limit`, `signal`).
 */
async function historyHeld() {
  srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 1, query_processes: 1, query_per_client: 2, query_cache_mb: 0, recent_messages_per_stream: 1 });
  const s = srv;
  logsDir = join(s.dataDir, "logs");
  for (const body of ["a", "b", "c"]) {
    expect((await fetch(`${s.url}/api/streams/hist/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } })).status).toBeLessThan(300);
  }
  const history = (limit = 3, signal?: AbortSignal) => fetch(`${s.url}/api/streams/hist/messages?source=log&limit=${limit}`, { signal });
  expect((await history()).status).toBe(200); // the query process up and ready
  const pool = findQueryPool(logsDir)!;
  // Stopped here; busy under load (a long query's process runs SCHED_IDLE): the first holds the slot.
  const pid = pool.processes()[0]!.pid;
  process.kill(pid, "SIGSTOP");
  stopped = pid;
  const first = history();
  await waitFor(() => pool.active === 1, "the first history query to run");
  await Bun.sleep(100);
  const go = () => {
    process.kill(pid, "SIGCONT");
    stopped = null;
  };
  return { pool, history, first, go };
}

describe("riding and query_per_client (history route, by client address)", () => {
  it("identical history queries of one client are all answered, as when they shared one waiting place: riders do not turn them into 429s", async () => {
    const { history, first, go } = await historyHeld();
    // Three more identical ones from the same client. Before riding: the second waited for a slot (the
    // client's second place) and the third and fourth shared its answer, holding no place.
    const others = [history(), history(), history()];
    await Bun.sleep(500);
    go();
    const statuses = (await Promise.all([first, ...others])).map((r) => r.status);
    expect(statuses).toEqual([200, 200, 200, 200]);
  });
});

describe("a rider whose client goes away (its query process busy)", () => {
  it("gives its place (the client's share) back at once, as a waiting query does: the client's next query is not refused with 429", async () => {
    const { pool, history, first, go } = await historyHeld();
    // An identical one, whose client goes away. Before riding it waited for a slot, and gave its
    // place back the moment its client left (QueryPool.acquire); riding, nothing runs for it either.
    const leaving = new AbortController();
    const second = history(3, leaving.signal).catch((e: Error) => e);
    await Bun.sleep(300);
    expect(pool.riders).toBe(1);
    leaving.abort();
    expect(await second).toBeInstanceOf(Error);
    // Its place is free while its query process is still stopped: nothing waited for it to answer.
    await waitFor(() => pool.riders === 0, "the rider's place to be free", 1_000);
    await Bun.sleep(500);
    // The same client asks something else: one query running, none waiting: within its share of 2.
    const third = history(2);
    const early = await Promise.race([third.then((r) => r.status), Bun.sleep(1000).then(() => "pending")]);
    go();
    expect((await first).status).toBe(200);
    expect({ early, third: (await third).status }).toEqual({ early: "pending", third: 200 });
  });
});
