import { afterAll, beforeAll, expect, it, setDefaultTimeout } from "bun:test";
import { startTestServer, type TestServer } from "./support/server.ts";

// A query (joined to an identical one or not) must count every message acknowledged before it was sent,
// while other messages keep coming (follows read the spool between queries).
setDefaultTimeout(180_000);
const SQL = "SELECT count(*)::INT AS n, (SELECT count(*)::INT FROM range(60000000) t(i) WHERE i % 13 = 3) AS slow FROM messages WHERE stream = 'fresh'";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ query_timeout_seconds: 30, query_concurrency: 4, query_processes: 1, query_cache_mb: 0 });
});
afterAll(async () => {
  await srv.close();
});
const publish = async (stream: string, body: string) => {
  const r = await fetch(`${srv.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: srv.adminHeaders });
  expect(r.status).toBeLessThan(300);
};
const ask = async () => {
  const r = await fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql: SQL, format: "json" }), headers: srv.adminHeaders });
  expect(r.status).toBe(200);
  return ((await r.json()) as { n: number }[])[0]!.n;
};

it("every answer counts the messages acknowledged before its query was sent", async () => {
  let acked = 0;
  let stop = false;
  const noise = (async () => { let i = 0; while (!stop) { await publish("other", `n${i++}`); await Bun.sleep(3); } })();
  const bad: string[] = [];
  const asks: Promise<void>[] = [];
  for (let k = 0; k < 60; k++) {
    if (k % 3 === 0) { await publish("fresh", `m${k}`); acked++; }
    const before = acked;
    asks.push(ask().then((n) => { if (n < before) bad.push(`query ${k}: ${n} < ${before}`); }));
    await Bun.sleep(40 + (k % 5) * 25);
  }
  await Promise.all(asks);
  stop = true;
  await noise;
  expect(bad).toEqual([]);
});
