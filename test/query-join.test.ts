import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { findQueryPool, queryCounts } from "../app/analytics/run-query.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// An identical query that comes while one runs over the same data (nothing new in the log since) waits
// for that answer rather than run beside it: two slots, one DuckDB run. The answer cache is off here
// (query_cache_mb 0), so nothing else could answer the second one without a run.
setDefaultTimeout(60_000);

/** About a second of CPU, over the log: its answer depends on the stream's messages. */
const SLOW = "SELECT count(*)::INT AS n, (SELECT count(*)::INT FROM range(300000000) t(i) WHERE i % 13 = 3) AS slow FROM messages WHERE stream = 'join'";
const SLOW_ANSWER = 23076923;

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 2, query_processes: 1, query_cache_mb: 0 });
  await publish("one");
  // The query process up and ready: a query is known to be running (and ridden on) once it has its process.
  expect((await ask("SELECT 1 AS x")).status).toBe(200);
});
afterAll(async () => {
  await srv.close();
});

const pool = () => findQueryPool(join(srv.dataDir, "logs")) ?? { active: 0 };
const ask = (sql: string, signal?: AbortSignal, format = "json") =>
  fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format }), headers: srv.adminHeaders, signal });
async function publish(body: string) {
  expect((await fetch(`${srv.url}/api/streams/join/messages`, { method: "POST", body, headers: srv.adminHeaders })).status).toBeLessThan(300);
}
async function setting(change: Record<string, unknown>) {
  const r = await fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify(change), headers: srv.adminHeaders });
  expect(r.ok).toBe(true);
}
/** Queries riding on a running one (no slot), as the pool counts them. */
const riders = () => findQueryPool(join(srv.dataDir, "logs"))?.riders ?? 0;
/**
 * Sends `sql`, waits until it runs, then sends it again: the two responses.
 * The second, identical to a query running, goes to the query process without
 * a slot (it rides on the first, run-query.ts): it is there once it rides.
 */
async function twice(sql: string, between?: () => Promise<void>, signals: (AbortSignal | undefined)[] = []) {
  const first = ask(sql, signals[0]).catch((e: Error) => e);
  await waitFor(() => pool().active === 1, "the first query to run");
  await Bun.sleep(200); // its process has it and has read the log
  await between?.();
  const second = ask(sql, signals[1]).catch((e: Error) => e);
  // Riding; or, when it found older data, past that already and queued for a slot of its own.
  await waitFor(() => riders() === 1 || pool().active === 2, "the second query to ride on the first");
  return [first, second] as const;
}

describe("an identical query while one runs", () => {
  it("over the same data waits for that run's answer: both get it, one run (counted as shared)", async () => {
    const shared = queryCounts.shared;
    const runs = queryCounts.run;
    const [first, second] = await twice(SLOW);
    expect(pool().active).toBe(1); // riding: no slot of its own
    for (const r of await Promise.all([first, second])) {
      expect(r).toBeInstanceOf(Response);
      expect((r as Response).status).toBe(200);
      expect(await (r as Response).json()).toEqual([{ n: 1, slow: SLOW_ANSWER }]);
    }
    expect(queryCounts.shared).toBe(shared + 1);
    expect(queryCounts.run).toBe(runs + 1);
    expect(riders()).toBe(0);
  });

  it("does not join a run over older data: a message published meanwhile is in the second answer, not the first", async () => {
    const shared = queryCounts.shared;
    const [first, second] = await twice(SLOW, () => publish("two"));
    expect(await ((await first) as Response).json()).toEqual([{ n: 1, slow: SLOW_ANSWER }]);
    expect(await ((await second) as Response).json()).toEqual([{ n: 2, slow: SLOW_ANSWER }]);
    expect(queryCounts.shared).toBe(shared);
  });

  it("does not join a query asked in another format", async () => {
    const shared = queryCounts.shared;
    const first = ask(SLOW);
    await waitFor(() => pool().active === 1, "the first query to run");
    const second = ask(SLOW, undefined, "csv");
    expect(await (await first).json()).toEqual([{ n: 2, slow: SLOW_ANSWER }]);
    expect(await (await second).text()).toBe(`n,slow\n2,${SLOW_ANSWER}\n`);
    expect(queryCounts.shared).toBe(shared);
  });

  it("runs itself when the run it waited for was cancelled (that client went away), and answers in full", async () => {
    const shared = queryCounts.shared;
    const leaving = new AbortController();
    const [first, second] = await twice(SLOW, undefined, [leaving.signal]);
    await Bun.sleep(200);
    leaving.abort();
    expect(await first).toBeInstanceOf(Error);
    const r = (await second) as Response;
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual([{ n: 2, slow: SLOW_ANSWER }]);
    expect(queryCounts.shared).toBe(shared);
    await waitFor(() => pool().active === 0, "both slots to be free", 5_000);
  });

  it("that goes away gives its place back at once, and the run it waited for still answers its own client", async () => {
    const leaving = new AbortController();
    const [first, second] = await twice(SLOW, undefined, [undefined, leaving.signal]);
    leaving.abort();
    expect(await second).toBeInstanceOf(Error);
    await waitFor(() => riders() === 0, "the second query's place to be free", 2_000);
    expect(pool().active).toBe(1);
    const r = (await first) as Response;
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual([{ n: 2, slow: SLOW_ANSWER }]);
  });

  it("gets the same error when that run fails (its time limit), without running past its own", async () => {
    const endless = "SELECT count(*) AS n FROM range(40000000000) t(i) WHERE i % 13 = 3";
    await setting({ query_timeout_seconds: 2 });
    try {
      const [first, second] = await twice(endless);
      for (const res of await Promise.all([first, second])) {
        expect((res as Response).status).toBe(400);
        expect(((await (res as Response).json()) as { error: { message: string } }).error.message).toContain("took longer than 2 s");
      }
    } finally {
      await setting({ query_timeout_seconds: 30 });
    }
  });

  it("is joined at the newest version: a third query after a publish joins the second run, not the first", async () => {
    const shared = queryCounts.shared;
    const [first, second] = await twice(SLOW, () => publish("three"));
    // The second rode on the first, found older data, and was queued: it runs in the other slot.
    await waitFor(() => pool().active === 2 && riders() === 0, "the second query to run itself");
    await Bun.sleep(200); // the second has read the log
    // Both slots taken: the third is answered with the second's run only by riding on it.
    const third = ask(SLOW);
    await waitFor(() => riders() === 1, "the third query to ride on the second");
    expect(await ((await first) as Response).json()).toEqual([{ n: 2, slow: SLOW_ANSWER }]);
    expect(await ((await second) as Response).json()).toEqual([{ n: 3, slow: SLOW_ANSWER }]);
    expect(await (await third).json()).toEqual([{ n: 3, slow: SLOW_ANSWER }]);
    expect(queryCounts.shared).toBe(shared + 1);
  });

  it("8 at once cost one run: the seven identical ones ride on it, holding no slot, and all get its answer", async () => {
    const shared = queryCounts.shared;
    const runs = queryCounts.run;
    const first = ask(SLOW);
    await waitFor(() => pool().active === 1, "the first query to run");
    await Bun.sleep(200);
    const others = Array.from({ length: 7 }, () => ask(SLOW));
    await waitFor(() => riders() === 7, "seven queries to ride on the first");
    expect(pool().active).toBe(1);
    const metrics = await (await fetch(`${srv.url}/metrics`, { headers: srv.adminHeaders })).text();
    expect(metrics).toContain("switchyard_queries_riding 7\n");
    expect(metrics).toContain("switchyard_queries_running 1\n");
    const answers = await Promise.all([first, ...others].map(async (r) => (await r).json()));
    const expected = answers[0];
    expect((expected as { slow: number }[])[0]!.slow).toBe(SLOW_ANSWER);
    for (const a of answers) expect(a).toEqual(expected);
    expect(queryCounts.run).toBe(runs + 1);
    expect(queryCounts.shared).toBe(shared + 7);
    expect(riders()).toBe(0);
  });

  it("whose process is killed under it is queued and answered by a new process", async () => {
    const [first, second] = await twice(SLOW);
    const [proc] = findQueryPool(join(srv.dataDir, "logs"))!.processes();
    expect(riders()).toBe(1);
    process.kill(proc!.pid, "SIGKILL");
    const f = (await first) as Response;
    expect(f.status).toBe(500);
    expect(((await f.json()) as { error: { message: string } }).error.message).toContain("query process");
    const r = (await second) as Response;
    expect(r.status).toBe(200);
    expect(((await r.json()) as { slow: number }[])[0]!.slow).toBe(SLOW_ANSWER);
    expect(findQueryPool(join(srv.dataDir, "logs"))!.processes()[0]?.pid).not.toBe(proc!.pid);
  });

  it("does not ride when its answer depends on more than the data (random()): it takes a slot and runs", async () => {
    const sql = `SELECT random() < 2 AS t, ${SLOW.slice("SELECT ".length)}`;
    const first = ask(sql);
    await waitFor(() => pool().active === 1, "the first query to run");
    await Bun.sleep(200);
    const second = ask(sql);
    await waitFor(() => pool().active === 2, "the second query to get its slot");
    expect(riders()).toBe(0);
    for (const r of await Promise.all([first, second])) expect(((await r.json()) as { t: boolean }[])[0]!.t).toBe(true);
  });
});
