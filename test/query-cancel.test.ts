import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { queryCounts, findQueryPool } from "../app/analytics/run-query.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// A client that goes away while its query waits or runs: the query is cancelled and its slot freed at
// once, not held to the time limit (60 s here), where a few impatient clients would block everyone.
setDefaultTimeout(60_000);

/** Runs until cancelled or stopped at the time limit (about a minute of CPU). */
const ENDLESS = "SELECT count(*) AS n FROM range(40000000000) t(i) WHERE i % 13 = 3";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ query_timeout_seconds: 60, query_concurrency: 1, query_processes: 1 });
});
afterAll(async () => {
  await srv.close();
});

const pool = () => findQueryPool(join(srv.dataDir, "logs"))!;
const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${srv.url}${path}`, { method: "POST", body: JSON.stringify(body), headers: srv.adminHeaders, signal }).catch((e: Error) => e);
/** Sends a query and lets the client go away after `ms`. */
async function abandon(send: (signal: AbortSignal) => Promise<unknown>, ms = 300) {
  const client = new AbortController();
  const pending = send(client.signal);
  await Bun.sleep(ms);
  client.abort();
  return pending;
}

describe("a client that goes away", () => {
  it("cancels its running whole-answer query (/api/query): the slot is free at once, the same process answers the next", async () => {
    expect(await (await post("/api/query", { sql: "SELECT 1 AS x" }) as Response).json()).toEqual([{ x: 1 }]);
    const pid = pool().processes()[0]!.pid;
    const client = new AbortController();
    const pending = post("/api/query", { sql: ENDLESS }, client.signal);
    await waitFor(() => pool().active === 1, "the query to run");
    await Bun.sleep(300);
    const at = Date.now();
    client.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => pool().active === 0, "its slot to be free", 5_000);
    expect(Date.now() - at).toBeLessThan(5_000);
    expect(await (await post("/api/query", { sql: "SELECT 2 AS x" }) as Response).json()).toEqual([{ x: 2 }]);
    expect(pool().processes()[0]!.pid).toBe(pid);
  });

  it("cancels a query the moment it got its slot (the cancel reaching the query process before DuckDB runs it), whole or streamed", async () => {
    for (const format of ["json", "ndjson", "json", "ndjson"]) {
      const client = new AbortController();
      const pending = post("/api/query", { sql: ENDLESS, format }, client.signal);
      await waitFor(() => pool().active === 1, "the query to get its slot", 5_000);
      client.abort();
      await pending;
      await waitFor(() => pool().active === 0, `the ${format} query's slot to be free`, 5_000);
    }
  });

  it("is answered nothing and leaves nothing behind when it was gone before its query was asked, and clients still there get their answer", async () => {
    const { runQueryInWorker } = await import("../app/analytics/run-query.ts");
    const { queryLimits } = await import("../app/analytics/limits.ts");
    const limits = queryLimits({ dataDir: srv.dataDir, nodeId: "test-node" }, srv.store.settings); // as the server asks
    const holder = new AbortController();
    const held = post("/api/query", { sql: ENDLESS }, holder.signal);
    await waitFor(() => pool().active === 1, "the slot to be taken");
    const job = { sql: "SELECT 42 AS answer", format: "json" as const, rowLimit: 10, ...limits };
    const gone = await runQueryInWorker({ ...job, signal: AbortSignal.abort() });
    expect(gone).toMatchObject({ ok: false, status: 499 });
    expect(pool().queued).toBe(0);
    const there = runQueryInWorker({ ...job, signal: new AbortController().signal });
    await waitFor(() => pool().queued === 1, "the next one to wait");
    holder.abort();
    await held;
    const answer = await there;
    expect(answer.ok && Buffer.from(answer.body).toString()).toBe('[{"answer":42}]\n');
  });

  it("cancels a streamed query (NDJSON) before its first rows, and a Grafana (Infinity) query", async () => {
    await abandon((signal) => post("/api/query", { sql: ENDLESS, format: "ndjson" }, signal));
    await waitFor(() => pool().active === 0, "the streamed query's slot to be free", 5_000);
    await abandon((signal) => fetch(`${srv.url}/grafana/json?sql=${encodeURIComponent(ENDLESS)}`, { headers: srv.adminHeaders, signal }).catch((e: Error) => e));
    await waitFor(() => pool().active === 0, "the Grafana query's slot to be free", 5_000);
    expect((await post("/api/query", { sql: "SELECT 3 AS x" }) as Response).status).toBe(200);
  });

  it("gives back its place in the queue, and a query never runs once every client sharing it has gone", async () => {
    // The one slot is taken by a query that runs until it is cancelled.
    const holder = new AbortController();
    const held = post("/api/query", { sql: ENDLESS }, holder.signal);
    await waitFor(() => pool().active === 1, "the slot to be taken");
    const runs = queryCounts.run;
    // One client waits and goes.
    const waiting = new AbortController();
    const w = post("/api/query", { sql: "SELECT 10 AS x" }, waiting.signal);
    await waitFor(() => pool().queued === 1, "the query to wait");
    waiting.abort();
    await w;
    await waitFor(() => pool().queued === 0, "its place to be given back", 2_000);
    // Two clients ask the same (they share one run); one goes, the other gets the answer.
    const twin1 = new AbortController();
    const a = post("/api/query", { sql: "SELECT 11 AS x" }, twin1.signal);
    const b = post("/api/query", { sql: "SELECT 11 AS x" });
    await waitFor(() => pool().queued === 1, "the shared query to wait");
    twin1.abort();
    await a;
    await Bun.sleep(100);
    expect(pool().queued).toBe(1);
    // Two more share one, and both go: its place is given back.
    const both = [new AbortController(), new AbortController()];
    const c = both.map((ac) => post("/api/query", { sql: "SELECT 12 AS x" }, ac.signal));
    await waitFor(() => pool().queued === 2, "the second shared query to wait");
    for (const ac of both) ac.abort();
    await Promise.all(c);
    await waitFor(() => pool().queued === 1, "the place of the query nobody waits for to be given back", 2_000);
    holder.abort();
    await held;
    const answered = await b as Response;
    expect(await answered.json()).toEqual([{ x: 11 }]);
    // The holder and the shared query ran; neither query whose clients all went did.
    expect(queryCounts.run - runs).toBe(1);
    await waitFor(() => pool().active === 0 && pool().queued === 0, "nothing left");
  });
});
