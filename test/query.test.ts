import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatResult, QueryEngine, QueryError } from "../app/analytics/engine.ts";
import { silentLogger } from "../app/core/logger.ts";
import { compactSegments } from "../app/log/compaction.ts";
import { Spool } from "../app/log/spool.ts";
import { cli } from "./support/cli.ts";
import { tempDir } from "./support/server.ts";
import type { QueryProcess } from "../app/analytics/query-pool.ts";

// DuckDB and subprocesses: more than Bun's 5 s default.
setDefaultTimeout(60_000);

/** A data dir with 30 messages compacted to Parquet and 10 more still in the spool. */
async function dataDir() {
  const tmp = tempDir();
  const spoolDir = join(tmp.dir, "spool");
  const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  for (let i = 1; i <= 30; i++) spool.append({ stream: i % 2 ? "spin30" : "lab/rig", ts: Date.UTC(2026, 10, 23) * 1000 + i, seq: i, origin: "t", data: `{"v":${i}}`, size: 8 });
  spool.close();
  await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(tmp.dir, "logs"));
  const tail = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  for (let i = 31; i <= 40; i++) tail.append({ stream: "spin30", ts: Date.UTC(2026, 10, 23) * 1000 + i, seq: i, origin: "t", data: i === 40 ? new Uint8Array([1, 2]) : `{"v":${i}}`, size: 8 });
  tail.close();
  return tmp;
}

const open = (dir: string) => QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir: join(dir, "spool"), tempDir: join(dir, "tmp", "duckdb") });

describe("SQL over the log", () => {
  it("sees Parquet and the not-yet-compacted spool in one view", async () => {
    const tmp = await dataDir();
    const engine = await open(tmp.dir);
    const r = await engine.query("SELECT stream, count(*) AS n, max(seq) AS last FROM messages GROUP BY 1 ORDER BY 1");
    expect(r.columns).toEqual(["stream", "n", "last"]);
    expect(r.rows).toEqual([{ stream: "lab/rig", n: "15", last: "30" }, { stream: "spin30", n: "25", last: "40" }]);
    const [row] = (await engine.query("SELECT kind, data, strftime(ts, '%Y-%m-%d') AS day, date::VARCHAR AS date FROM messages WHERE seq = 40")).rows;
    expect(row).toEqual({ kind: "binary", data: "AQI=", day: "2026-11-23", date: "2026-11-23" });
    const [json] = (await engine.query("SELECT sum((data::JSON->>'v')::INT) AS total FROM messages WHERE kind = 'text'")).rows;
    expect(json).toEqual({ total: "780" });
    engine.close();
    tmp.remove();
  });

  it("counts a segment once when its Parquet lands while the spool still holds it (a query during compaction)", async () => {
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      for (let i = 1; i <= 25; i++) spool.append({ stream: "spin30", ts: Date.UTC(2026, 10, 23) * 1000 + i, seq: i, origin: "t", data: "x", size: 1 });
      spool.close();
      const [segment] = Spool.segments(spoolDir);
      const bytes = readFileSync(join(spoolDir, segment!));
      await compactSegments([join(spoolDir, segment!)], join(tmp.dir, "logs"));
      // The moment between "Parquet moved into place" and "segment removed": both are there.
      writeFileSync(join(spoolDir, segment!), bytes);
      const engine = await open(tmp.dir);
      expect((await engine.query("SELECT count(*) AS n, count(DISTINCT seq) AS seqs FROM messages")).rows).toEqual([{ n: "25", seqs: "25" }]);
      engine.close();
      // Once the segment is gone, the Parquet answers alone.
      const { unlinkSync } = await import("node:fs");
      unlinkSync(join(spoolDir, segment!));
      const later = await open(tmp.dir);
      expect((await later.query("SELECT count(*) AS n FROM messages")).rows).toEqual([{ n: "25" }]);
      later.close();
    } finally {
      tmp.remove();
    }
  });

  it.each([
    ["COPY (SELECT 1) TO '/tmp/switchyard-evil.csv'", /only SELECT|disabled by configuration/],
    ["SELECT * FROM read_csv('/etc/passwd')", /file system operations are disabled/],
    ["SELECT * FROM read_text('/etc/hostname')", /file system operations are disabled/],
    ["ATTACH '/tmp/switchyard-evil.db' AS evil", /only SELECT|disabled by configuration/],
    ["INSTALL httpfs", /only SELECT|disabled/],
    ["LOAD httpfs", /only SELECT|disabled/],
    ["SET enable_external_access = true", /only SELECT|locked/],
    ["CREATE TABLE t AS SELECT 1", /only SELECT/],
    ["DELETE FROM spool_tail", /only SELECT/],
    ["SELECT 1; SELECT 2", /exactly one statement \(got more than one\)/],
    ["COPY (SELECT 1) TO '/tmp/switchyard-evil.csv'; SELECT 1", /exactly one statement/],
    ["SELECT 1; COPY (SELECT 1) TO '/tmp/switchyard-evil.csv'", /exactly one statement/],
    ["CREATE TABLE evil AS SELECT 1; SELECT 1", /exactly one statement/],
    ["", /exactly one statement \(got none\)/],
    ["-- only a comment", /exactly one statement \(got none\)/],
    ["SELECT * FROM nowhere", /nowhere/],
  ])("refuses %s with a clear error", async (sql, why) => {
    const tmp = await dataDir();
    const engine = await open(tmp.dir);
    let err: unknown;
    try { await engine.query(sql); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(QueryError);
    expect((err as Error).message).toMatch(why);
    expect(existsSync("/tmp/switchyard-evil.csv")).toBe(false);
    // Nothing of a refused batch ran: no table was made.
    expect((await engine.query("SELECT count(*)::INT AS n FROM duckdb_tables() WHERE table_name = 'evil'")).rows).toEqual([{ n: 0 }]);
    engine.close();
    tmp.remove();
  });

  it("enforces a row limit and a time limit with errors that say what to do", async () => {
    const tmp = await dataDir();
    const engine = await open(tmp.dir);
    await expect(engine.query("SELECT * FROM messages", { rowLimit: 10 })).rejects.toThrow("more than 10 rows; add a LIMIT");
    await expect(engine.query("SELECT count(*) FROM range(100000000000) a", { timeoutMs: 300 })).rejects.toThrow("longer than 300 ms and was stopped");
    engine.close();
    tmp.remove();
  });

  it("formats results as a table, CSV, JSON and NDJSON", () => {
    const r = { columns: ["a", "b"], rows: [{ a: "x,y", b: 1 }, { a: "z", b: null }] };
    expect(formatResult(r, "csv")).toBe('a,b\n"x,y",1\nz,\n');
    expect(formatResult(r, "json")).toBe('[{"a":"x,y","b":1},{"a":"z","b":null}]\n');
    expect(formatResult(r, "ndjson")).toBe('{"a":"x,y","b":1}\n{"a":"z","b":null}\n');
    expect(formatResult(r, "table")).toBe("a    b\n---  -\nx,y  1\nz\n(2 rows)\n");
  });

  it("switchyard query prints results and exits 1 with the reason for a refused query", async () => {
    const tmp = await dataDir();
    const ok = await cli(["query", "SELECT stream, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1", "--format", "csv", "--data-dir", tmp.dir]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe("stream,n\nlab/rig,15\nspin30,25\n");
    const out = join(tmp.dir, "out.ndjson");
    expect((await cli(["query", "SELECT seq FROM messages WHERE seq <= 2 ORDER BY seq", "--format", "ndjson", "--output", out, "--data-dir", tmp.dir])).code).toBe(0);
    expect(readFileSync(out, "utf8")).toBe('{"seq":"1"}\n{"seq":"2"}\n');
    const bad = await cli(["query", "SELECT * FROM read_csv('/etc/passwd')", "--data-dir", tmp.dir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("query failed:");
    expect((await cli(["query", "SELECT 1", "--format", "xml", "--data-dir", tmp.dir])).code).toBe(2);
    tmp.remove();
  });

  it("lets a cancel that comes after its query ended alone: the next query on the pooled connection runs on", async () => {
    const tmp = await dataDir();
    const engine = await open(tmp.dir);
    try {
      let cancel: (() => void) | undefined;
      await engine.query("SELECT count(*) FROM messages", { onInterrupt: (f) => { cancel = f; } });
      // The same connection, back in the pool, runs a query long enough to be interrupted.
      const next = engine.query("SELECT count(*) AS n FROM range(400000000) t(i) WHERE i % 7 = 3");
      await Bun.sleep(50);
      cancel!();
      expect((await next).rows).toEqual([{ n: "57142857" }]);
      // A cancel while its own query runs still stops it.
      let stop: (() => void) | undefined;
      const own = engine.query("SELECT count(*) AS n FROM range(4000000000) t(i) WHERE i % 7 = 3", { onInterrupt: (f) => { stop = f; } });
      await Bun.sleep(50);
      stop!();
      await expect(own).rejects.toThrow("the query was cancelled");
    } finally {
      engine.close();
      tmp.remove();
    }
  });

  it("stops a query cancelled before DuckDB started it (as it was prepared), rather than run it to its end", async () => {
    const tmp = await dataDir();
    const engine = await open(tmp.dir);
    try {
      // Cancelled once the view is fresh and before the statement is prepared: DuckDB forgets an
      // interrupt that comes before its query starts, so the engine must remember it.
      const sql = "SELECT count(*) AS n FROM range(3000000000) t(i) WHERE i % 7 = 3";
      for (const whole of [true, false]) {
        let cancel: (() => void) | undefined;
        const rows: unknown[] = [];
        const run = engine.streamRows(sql, { rowLimit: 10, timeoutMs: 120_000, whole, onInterrupt: (f) => { cancel = f; }, onVersion: () => cancel!() }, (_c, r) => { rows.push(...r); });
        await expect(run).rejects.toThrow("the query was cancelled");
        expect(rows).toEqual([]);
      }
      // The same from query() and a Parquet export, cancelled as their statement is prepared.
      const cancelSoon = (f: () => void) => queueMicrotask(f);
      await expect(engine.query(sql, { onInterrupt: cancelSoon })).rejects.toThrow("the query was cancelled");
      // The pooled connection's next query does not wait for the cancelled one to run to its end.
      expect((await engine.query("SELECT 1 AS x", { timeoutMs: 3000 })).rows).toEqual([{ x: 1 }]);
      const exporting = await QueryEngine.open({ logsDir: join(tmp.dir, "logs"), spoolDir: join(tmp.dir, "spool"), tempDir: join(tmp.dir, "tmp", "duckdb"), exportDir: join(tmp.dir, "export") });
      try {
        const path = join(exporting.exportDir, "out.parquet");
        await expect(exporting.exportParquet(sql, path, 120_000, cancelSoon)).rejects.toThrow("the query was cancelled");
        expect(existsSync(path)).toBe(false);
        expect((await exporting.query("SELECT 1 AS x", { timeoutMs: 3000 })).rows).toEqual([{ x: 1 }]);
        // Not cancelled, it writes the file.
        expect(await exporting.exportParquet("SELECT 42 AS n", path)).toBe(1);
      } finally {
        exporting.close();
      }
    } finally {
      engine.close();
      tmp.remove();
    }
  });
});

describe("POST /api/query", () => {
  it("answers SQL over the live log from the query process, in JSON or CSV, and refuses escapes with 400", async () => {
    const { startTestServer } = await import("./support/server.ts");
    const srv = await startTestServer();
    try {
      for (let i = 1; i <= 5; i++) await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: `{"v":${i}}`, headers: { "content-type": "application/json" } });
      const ask = (body: unknown) => fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify(body) });
      const json = await ask({ sql: "SELECT seq, data FROM messages WHERE stream = 'spin30' ORDER BY seq DESC LIMIT 2" });
      expect(json.status).toBe(200);
      expect(json.headers.get("x-switchyard-rows")).toBe("2");
      expect(await json.json()).toEqual([{ seq: "5", data: '{"v":5}' }, { seq: "4", data: '{"v":4}' }]);
      const csv = await ask({ sql: "SELECT count(*) AS n FROM messages", format: "csv" });
      expect(csv.headers.get("content-type")).toContain("text/csv");
      expect(await csv.text()).toBe("n\n5\n");
      const escape = await ask({ sql: "SELECT * FROM read_csv('/etc/passwd')" });
      expect(escape.status).toBe(400);
      expect((await escape.json()).error.message).toContain("file system operations are disabled");
      expect((await ask({ sql: "SELECT 1", format: "xml" })).status).toBe(400);
      // Names every object has (inherited) and values that only turn into a format's name are no format either.
      const odd: Record<string, string> = {};
      for (const format of ["toString", "__proto__", "constructor", ["json"], ["parquet"], 1]) {
        const r = await ask({ sql: "SELECT 1", format });
        odd[JSON.stringify(format)] = `${r.status} ${(await r.text()).includes("allowed: json, ndjson, csv, table, parquet")}`;
      }
      expect(odd).toEqual({ '"toString"': "400 true", '"__proto__"': "400 true", '"constructor"': "400 true", '["json"]': "400 true", '["parquet"]': "400 true", "1": "400 true" });
    } finally {
      await srv.close();
    }
  });
});

describe("Parquet exports", () => {
  it("switchyard query --format parquet writes a Parquet file; POST /api/query downloads one", async () => {
    const tmp = await dataDir();
    const out = join(tmp.dir, "export", "spin30.parquet");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(tmp.dir, "export"));
    const r = await cli(["query", "SELECT seq, data FROM messages WHERE stream = 'spin30' ORDER BY seq", "--format", "parquet", "--output", out, "--data-dir", tmp.dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("wrote 25 rows");
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const db = await DuckDBInstance.create(":memory:");
    const conn = await db.connect();
    expect((await conn.runAndReadAll(`SELECT count(*)::INT AS n, min(seq)::INT AS first FROM read_parquet('${out}')`)).getRowObjectsJson()).toEqual([{ n: 25, first: 1 }]);
    conn.closeSync();
    db.closeSync();
    expect((await cli(["query", "SELECT 1", "--format", "parquet", "--data-dir", tmp.dir])).code).toBe(2);
    tmp.remove();

    const { startTestServer } = await import("./support/server.ts");
    const srv = await startTestServer();
    try {
      await fetch(`${srv.url}/api/streams/s/messages`, { method: "POST", body: "hello" });
      const res = await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql: "SELECT data FROM messages", format: "parquet" }) });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/vnd.apache.parquet");
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect(Buffer.from(bytes.subarray(0, 4)).toString()).toBe("PAR1");
      expect(res.headers.get("x-switchyard-rows")).toBe("1");
      const escape = await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql: "SELECT * FROM read_csv('/etc/passwd')", format: "parquet" }) });
      expect(escape.status).toBe(400);
    } finally {
      await srv.close();
    }
  });
});

describe("streamed answers", () => {
  it("streams NDJSON and CSV as DuckDB produces them, and ends a stream past the row limit with an error line", async () => {
    const { startTestServer } = await import("./support/server.ts");
    const srv = await startTestServer();
    try {
      const ask = (sql: string, format: string) => fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format }) });
      const big = await ask("SELECT range AS i FROM range(150000)", "ndjson");
      expect(big.status).toBe(200);
      const lines = (await big.text()).trimEnd().split("\n");
      expect(lines).toHaveLength(100_001);
      expect(JSON.parse(lines[0]!)).toEqual({ i: "0" });
      expect(JSON.parse(lines[99_999]!)).toEqual({ i: "99999" });
      expect(JSON.parse(lines[100_000]!).error).toContain("more than 100000 rows");
      const none = await ask("SELECT 1 AS a, 2 AS b WHERE false", "csv");
      expect(await none.text()).toBe("a,b\n");
      const many = await (await ask("SELECT range AS i FROM range(5000)", "csv")).text();
      expect(many.split("\n")[0]).toBe("i");
      expect(many.trimEnd().split("\n")).toHaveLength(5001);
      const bad = await ask("SELECT * FROM read_csv('/etc/passwd')", "ndjson");
      expect(bad.status).toBe(400);
    } finally {
      await srv.close();
    }
  });
});

describe("query concurrency", () => {
  it("queues queries past the slots, answers 503 with Retry-After only when the queue is full, and serves the queued one after", async () => {
    const { startTestServer } = await import("./support/server.ts");
    const { MAX_CONCURRENT_QUERIES, activeQueries, queuedQueries } = await import("../app/analytics/run-query.ts");
    const { waitFor } = await import("./support/server.ts");
    const srv = await startTestServer({ query_timeout_seconds: 2, query_queue: 1 });
    try {
      // A cross join far too big to finish: stopped by the 2 s time limit.
      const slow = "SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE (a.range + b.range) % 7 = 3";
      const ask = (sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format: "json" }) });
      const running = Array.from({ length: MAX_CONCURRENT_QUERIES }, () => ask(slow));
      await waitFor(() => activeQueries() === MAX_CONCURRENT_QUERIES, "the slow queries to start");
      const queued = ask("SELECT 42 AS x");
      await waitFor(() => queuedQueries() === 1, "the next query to wait in the queue");
      const refused = await ask("SELECT 1 AS x");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect((await refused.json()).error.message).toContain("are waiting (query_queue)");
      for (const r of await Promise.all(running)) {
        expect(r.status).toBe(400);
        expect((await r.json()).error.message).toContain("took longer than 2 s");
      }
      const late = await queued;
      expect(late.status).toBe(200);
      expect(await late.json()).toEqual([{ x: 42 }]);
      expect((await ask("SELECT 1 AS x")).status).toBe(200);
    } finally {
      await srv.close();
    }
  });
});

describe("identical queries waiting together", () => {
  it("share one run that starts after the last of them came: one answer, fresh, counted in /metrics, and no queue place each", async () => {
    const { startTestServer, waitFor } = await import("./support/server.ts");
    const { MAX_CONCURRENT_QUERIES, activeQueries, queuedQueries } = await import("../app/analytics/run-query.ts");
    const srv = await startTestServer({ query_timeout_seconds: 2, query_queue: 1 });
    try {
      const ask = (sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format: "json" }) });
      const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(await (await fetch(`${srv.url}/metrics`, { headers: srv.adminHeaders })).text())![1]);
      const post = async (body: string) => expect((await fetch(`${srv.url}/api/streams/twins/messages`, { method: "POST", body, headers: srv.adminHeaders })).status).toBeLessThan(300);
      await post("first");
      const slow = "SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE (a.range + b.range) % 7 = 3";
      const running = Array.from({ length: MAX_CONCURRENT_QUERIES }, () => ask(slow));
      await waitFor(() => activeQueries() === MAX_CONCURRENT_QUERIES, "the slow queries to start");
      const [runBefore, sharedBefore] = [await metric("switchyard_queries_total"), await metric("switchyard_queries_shared_total")];
      const sql = "SELECT count(*)::INT AS n FROM messages WHERE stream = 'twins'";
      const twins = Array.from({ length: 5 }, () => ask(sql));
      await waitFor(() => queuedQueries() === 1, "one of them to wait in the queue");
      // The queue holds one place, taken by the first twin; the others wait with it, not refused.
      expect(await metric("switchyard_queries_waiting")).toBe(1);
      await post("second"); // published while they wait: the shared run starts after, so it counts it
      for (const r of await Promise.all(running)) expect(r.status).toBe(400);
      for (const r of await Promise.all(twins)) {
        expect(r.status).toBe(200);
        expect(await r.json()).toEqual([{ n: 2 }]);
      }
      expect(await metric("switchyard_queries_shared_total")).toBe(sharedBefore + 4);
      expect(await metric("switchyard_queries_total")).toBe(runBefore + 1);
      // A query asked once the shared run has started is a run of its own.
      expect(await (await ask(sql)).json()).toEqual([{ n: 2 }]);
      expect(await metric("switchyard_queries_total")).toBe(runBefore + 2);
    } finally {
      await srv.close();
    }
  });
});

describe("history queries per client", () => {
  it("refuses a client past query_per_client with 429 and Retry-After, and serves its waiting query after", async () => {
    const { startTestServer, waitFor } = await import("./support/server.ts");
    const { queuedQueries } = await import("../app/analytics/run-query.ts");
    const srv = await startTestServer({ query_timeout_seconds: 2, query_concurrency: 1, query_per_client: 1, recent_messages_per_stream: 1 });
    try {
      for (const body of ["a", "b", "c"]) await fetch(`${srv.url}/api/streams/hist/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } });
      // The one slot is busy with a slow SQL query (not a history query: no client share).
      const slow = fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql: "SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE (a.range + b.range) % 7 = 3" }) });
      await waitFor(async () => (await import("../app/analytics/run-query.ts")).activeQueries() === 1, "the slow query to run");
      const history = (limit = 3) => fetch(`${srv.url}/api/streams/hist/messages?source=log&limit=${limit}`);
      const waiting = history();
      await waitFor(() => queuedQueries() === 1, "the first history query to wait");
      // Another query from the same client (the same one would share the waiting one's answer).
      const refused = await history(2);
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect((await refused.json()).error.message).toContain("query_per_client");
      expect((await slow).status).toBe(400);
      const served = await waiting;
      expect(served.status).toBe(200);
      expect(((await served.json()) as { messages: { data: string }[] }).messages.map((m) => m.data)).toEqual(["a", "b", "c"]);
    } finally {
      await srv.close();
    }
  });
});

describe("queries riding on an identical running one (no slot)", () => {
  it("are at most query_queue, and query_per_client of one client, outside its share; and give their place back once", async () => {
    const { QueryPool, DEFAULT_POOL_LIMITS, configKey } = await import("../app/analytics/query-pool.ts");
    const dirs = { logsDir: "/nonexistent/logs", spoolDir: "/nonexistent/spool", tempDir: "/nonexistent/tmp" };
    // No process may start (processes 0): a query that is not refused waits in the queue.
    const limits = { ...DEFAULT_POOL_LIMITS, perClient: 2, queue: 3, processes: 0 };
    const pool = new QueryPool(dirs, limits);
    // What ridePlace looks at of the process running the query ridden on.
    const proc = { dead: false, retired: false, configKey: configKey(dirs, limits) } as QueryProcess;
    try {
      const a1 = pool.ridePlace(proc, "a")!;
      const a2 = pool.ridePlace(proc, "a")!;
      expect(a1.id).not.toBe(a2.id);
      expect(pool.ridePlace(proc, "a")).toBeNull(); // as many of this client riding as query_per_client
      // Riders are not in the client's share (the query they ride on holds its place): a query of its own waits.
      const own = pool.acquire("a");
      expect(pool.queued).toBe(1);
      const b = pool.ridePlace(proc, "b")!;
      expect(pool.riders).toBe(3);
      expect(pool.ridePlace(proc, undefined)).toBeNull(); // as many riding as the queue holds
      a1.release();
      a1.release(); // once only
      expect(pool.riders).toBe(2);
      // Not on a process that is gone, retiring, or of other settings than the pool's now.
      expect(pool.ridePlace({ ...proc, dead: true } as QueryProcess)).toBeNull();
      expect(pool.ridePlace({ ...proc, retired: true } as QueryProcess)).toBeNull();
      expect(pool.ridePlace({ ...proc, configKey: configKey(dirs, { ...limits, resultBytes: 1 }) } as QueryProcess)).toBeNull();
      const a3 = pool.ridePlace(proc, "a")!;
      expect(pool.ridePlace(proc, "a")).toBeNull();
      for (const p of [a2, a3, b]) p.release();
      expect(pool.riders).toBe(0);
      expect(pool.processes()).toHaveLength(0);
      await pool.close();
      expect(await own).toEqual({ busy: "the server is shutting down", status: 503 });
    } finally {
      await pool.close();
    }
    expect(pool.ridePlace(proc)).toBeNull(); // a stopped pool takes no rider
  });
});

/** An empty spool folder in a temp dir, the path of its first segment, and an encoder of test records by seq. */
async function segmentFixture() {
  const { encodeRecord } = await import("../app/log/record.ts");
  const { mkdirSync } = await import("node:fs");
  const tmp = tempDir();
  const spoolDir = join(tmp.dir, "spool");
  mkdirSync(spoolDir);
  const rec = (seq: number) => encodeRecord({ stream: "t", ts: Date.UTC(2026, 10, 23) * 1000 + seq, seq, origin: "o", data: `m${seq}`, size: 2 });
  return { tmp, spoolDir, seg: join(spoolDir, "0000000000000001.wal"), rec };
}

/** Records 1–3 written to `seg` (segmentFixture's), an engine open over them, and its messages' seqs in order (checked: [1, 2, 3]). */
async function overThree(dir: string, seg: string, rec: (seq: number) => Buffer) {
  writeFileSync(seg, Buffer.concat([1, 2, 3].map(rec)));
  const engine = await open(dir);
  const seqs = async () => (await engine.query("SELECT seq FROM messages ORDER BY seq")).rows.map((r) => Number(r.seq));
  expect(await seqs()).toEqual([1, 2, 3]);
  return { engine, seqs };
}

describe("the warm engine's spool tail", () => {
  it("appends what the spool gains between queries, drops a segment once compacted, and rereads a segment the spool cut back", async () => {
    const { appendFileSync, truncateSync } = await import("node:fs");
    const { tmp, seg, rec } = await segmentFixture();
    try {
      const { engine, seqs } = await overThree(tmp.dir, seg, rec);
      // A record still being written (half of it) is left for the next query.
      const four = rec(4);
      appendFileSync(seg, four.subarray(0, 10));
      expect(await seqs()).toEqual([1, 2, 3]);
      appendFileSync(seg, four.subarray(10));
      expect(await seqs()).toEqual([1, 2, 3, 4]);
      // A failed write cut back (the spool truncates to the last good size), then new records of the
      // same length written where the cut ones were, before any query looked.
      truncateSync(seg, rec(1).length * 2);
      appendFileSync(seg, Buffer.concat([rec(5), rec(6)]));
      expect(await seqs()).toEqual([1, 2, 5, 6]);
      // Compacted: the segment's Parquet appears, the segment goes; each message once throughout.
      await compactSegments([seg], join(tmp.dir, "logs"));
      expect(await seqs()).toEqual([1, 2, 5, 6]);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("a query that bound the view before a segment is read again sees the old table whole, never the new one half read", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { run } = DuckDBConnection.prototype;
    const { appendFileSync, truncateSync } = await import("node:fs");
    const { tmp, seg, rec } = await segmentFixture();
    try {
      const { engine, seqs } = await overThree(tmp.dir, seg, rec);
      // Cut back and written on: the next refresh reads the segment again from its start.
      truncateSync(seg, rec(1).length * 2);
      appendFileSync(seg, Buffer.concat([rec(5), rec(6)]));
      // A query that refreshed before and starts its run while that read goes on: as the read makes its
      // table, and again as its rows are in and the view is about to be made anew.
      const bound = (engine as unknown as { db: { connect(): Promise<InstanceType<typeof DuckDBConnection>> } }).db;
      const seen: { when: string; seqs: number[] }[] = [];
      const look = async (when: string) => {
        const conn = await bound.connect();
        try {
          seen.push({ when, seqs: (await run.call(conn, "SELECT seq FROM messages ORDER BY seq").then((r) => r.getRowObjectsJS())).map((r) => Number(r.seq)) });
        } finally {
          conn.closeSync();
        }
      };
      let armed = true;
      DuckDBConnection.prototype.run = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof run>) {
        const text = String(args[0]);
        if (armed && text.startsWith("BEGIN TRANSACTION")) await look("before the view is made");
        const result = await run.apply(this, args);
        if (armed && /^CREATE OR REPLACE TABLE tails\.tail_/.test(text)) await look("as the table read anew is made");
        return result;
      };
      let after: number[];
      try {
        after = await seqs();
      } finally {
        armed = false;
        DuckDBConnection.prototype.run = run;
      }
      expect(after).toEqual([1, 2, 5, 6]);
      // Both looks saw the view as it was, its table whole (they saw [] and then [1, 2, 5, 6] through the
      // old view, when the segment was read again into its own table's name).
      expect(seen).toEqual([
        { when: "as the table read anew is made", seqs: [1, 2, 3] },
        { when: "before the view is made", seqs: [1, 2, 3] },
      ]);
      // The old table goes once no query may read it; the view reads the new one.
      expect(await seqs()).toEqual([1, 2, 5, 6]);
      const tables = (await engine.query("SELECT table_name FROM duckdb_tables() WHERE database_name = 'tails' ORDER BY 1")).rows.map((r) => r.table_name);
      expect(tables).toEqual(["tail_1_1"]); // tail_1, which the view named before, is gone
      engine.close();
    } finally {
      DuckDBConnection.prototype.run = run;
      tmp.remove();
    }
  });

  it("reads a segment larger than its read window with every field of every record intact (strings point into the window until appended)", async () => {
    const { appendFileSync, mkdirSync } = await import("node:fs");
    const { encodeRecord, decodeRecord } = await import("../app/log/record.ts");
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      mkdirSync(spoolDir);
      const seg = join(spoolDir, "0000000000000001.wal");
      const t0 = Date.UTC(2026, 10, 23) * 1000;
      // Long streams and origins (not inline in DuckDB's strings), distinct payloads of 300–700 bytes,
      // binary ones, and text ones whose bytes are not UTF-8: about 19 MiB, so that each half takes
      // full 4 MiB windows, each read over the last (the rows left from one must be appended first).
      const records: Buffer[] = [];
      for (let seq = 1; seq <= 36_000; seq++) {
        const stream = `lab/a-longer-rig-name-${seq % 7}`;
        const base = { stream, ts: t0 + seq, seq, origin: `udp:10.0.${seq % 250}.${seq % 13}:5000`, size: 0 };
        if (seq % 101 === 0) {
          records.push(encodeRecord({ ...base, data: new Uint8Array(40).map((_, i) => (seq * 7 + i) % 256) }));
        } else if (seq % 103 === 0) {
          const r = encodeRecord({ ...base, data: "x".repeat(20) });
          r.set([0x61, 0xff, 0xfe, 0x62], r.length - 4);
          r.writeUInt32LE(Bun.hash.crc32(r.subarray(8)), 4);
          records.push(r);
        } else {
          records.push(encodeRecord({ ...base, data: `{"seq":${seq},"pad":"${"y".repeat(300)}${String(seq).repeat(1 + (seq % 80))}"}` }));
        }
      }
      const all = Buffer.concat(records);
      expect(all.length).toBeGreaterThan(4 * 4 * 1024 * 1024);
      // Half first (a query reads it), then the rest.
      const half = records.slice(0, 18_000).reduce((n, r) => n + r.length, 0);
      writeFileSync(seg, all.subarray(0, half));
      const engine = await open(tmp.dir);
      const hashes = async () => (await engine.query("SELECT seq::INT AS seq, md5(stream || '|' || origin || '|' || kind || '|' || data) AS h FROM messages ORDER BY seq")).rows;
      const expected = (upTo: number) => {
        const out: { seq: number; h: string }[] = [];
        for (let o = 0; o < upTo;) {
          const d = decodeRecord(all, o);
          if (!d.ok || !("message" in d)) throw new Error("bad fixture");
          const m = d.message;
          const text = typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("base64");
          out.push({ seq: m.seq, h: new Bun.CryptoHasher("md5").update(`${m.stream}|${m.origin}|${typeof m.data === "string" ? "text" : "binary"}|${text}`).digest("hex") });
          o = d.next;
        }
        return out;
      };
      expect(await hashes()).toEqual(expected(half));
      appendFileSync(seg, all.subarray(half));
      expect(await hashes()).toEqual(expected(all.length));
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("reads records at the edges of DuckDB's strings as decodeRecord does: across windows, in records bigger than a window, past a damaged record, and in small reads", async () => {
    const { appendFileSync, mkdirSync } = await import("node:fs");
    const { decodedRows, EDGE_STRINGS, rawRecord } = await import("./support/edge-records.ts");
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      mkdirSync(spoolDir);
      const n = EDGE_STRINGS.length;
      let seq = 1;
      const edge = (rep: number) => EDGE_STRINGS.map((_, i) => rawRecord(seq++, EDGE_STRINGS[i]!, EDGE_STRINGS[(i + rep) % n]!, EDGE_STRINGS[(i + 2 * rep + 1) % n]!, rep % 3 === 2 ? 2 : 1));
      const big = (kind: number, bytes: number) => rawRecord(seq++, Buffer.from("a-stream-with-a-longer-name"), Buffer.from("origin-é-longer"), Buffer.alloc(bytes, kind === 2 ? 0xfe : 0x62), kind);
      // Sealed segment: edge records, records of 5 MiB (each bigger than a 4 MiB window), a damaged
      // record, and edge records after it (read from the whole file, past the damage).
      const sealed = [...edge(0), big(1, 5 << 20), ...edge(1), big(2, 5 << 20), ...edge(2), ...edge(3)];
      const damagedAt = sealed.length - n - 5;
      const damaged = Buffer.from(sealed[damagedAt]!);
      damaged[damaged.length - 1]! ^= 0xff; // its CRC no longer matches
      const sealedBytes = Buffer.concat(sealed.map((r, i) => (i === damagedAt ? damaged : r)));
      writeFileSync(join(spoolDir, "0000000000000001.wal"), sealedBytes);
      const live = [...edge(4), big(1, (4 << 20) + 100), ...edge(5)];
      writeFileSync(join(spoolDir, "0000000000000002.wal"), Buffer.concat(live));
      const md5 = (s: string) => new Bun.CryptoHasher("md5").update(s).digest("hex");
      const expected = (records: Buffer[]) =>
        decodedRows(Buffer.concat(records)).map((r) => ({ seq: r.seq, ts: String(r.ts), stream: r.stream, origin: r.origin, kind: r.kind, data: md5(r.data) }));
      const engine = await open(tmp.dir);
      const rows = async () => (await engine.query("SELECT seq::INT AS seq, epoch_us(ts)::VARCHAR AS ts, stream, origin, kind, md5(data) AS data FROM messages ORDER BY seq")).rows;
      const intact = [...sealed.filter((_, i) => i !== damagedAt), ...live];
      expect(await rows()).toEqual(expected(intact));
      // A few records more: a read of a few hundred bytes (a small buffer of its own).
      const more = edge(6).slice(0, 6);
      expect(Buffer.concat(more).length).toBeLessThan(1000);
      appendFileSync(join(spoolDir, "0000000000000002.wal"), Buffer.concat(more));
      expect(await rows()).toEqual(expected([...intact, ...more]));
      // One record at a time, read by followTail (windows of one record).
      const added = edge(7);
      for (const r of added) {
        appendFileSync(join(spoolDir, "0000000000000002.wal"), r);
        expect(await engine.followTail()).toBe(1);
      }
      expect(await rows()).toEqual(expected([...intact, ...more, ...added]));
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("counts each message once after a read that DuckDB failed part-way (a query's refresh, then a follow): the segment is read again from the start, leaving no copy of a failed attempt", async () => {
    const { appendFileSync } = await import("node:fs");
    const { DuckDBAppender, DuckDBConnection } = await import("@duckdb/node-api");
    const { tmp, seg, rec } = await segmentFixture();
    const original = DuckDBAppender.prototype.appendDataChunk;
    /** The next read's third data chunk is refused, as DuckDB refuses one it has no memory for: two went in before it. */
    const failThirdChunk = () => {
      let calls = 0;
      DuckDBAppender.prototype.appendDataChunk = function (this: InstanceType<typeof DuckDBAppender>, ...args: Parameters<typeof original>) {
        if (++calls === 3) throw new Error("Out of Memory Error: could not allocate block (injected)");
        return original.apply(this, args);
      };
    };
    try {
      writeFileSync(seg, Buffer.concat([1, 2, 3].map(rec)));
      const engine = await open(tmp.dir);
      const counts = async () => (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d, max(seq)::INT AS m FROM messages")).rows[0];
      expect(await counts()).toEqual({ n: 3, d: 3, m: 3 });
      const range = (from: number, to: number) => Buffer.concat(Array.from({ length: to - from + 1 }, (_, i) => rec(from + i)));
      // 10,000 more (five chunks): the query's refresh fails on the third, after two were appended.
      appendFileSync(seg, range(4, 10_003));
      // That query, then three more whose read anew of the segment fails too: each attempt reads into a table of
      // its own, and a failed one was never in a view, so the next drops it (a box short of memory must not
      // pile up copies: seen, before, tail_1, tail_1_1, tail_1_2 and tail_1_3).
      for (let i = 0; i < 4; i++) {
        failThirdChunk();
        await expect(engine.query("SELECT count(*) FROM messages")).rejects.toThrow(/reading the log failed.*injected/);
        DuckDBAppender.prototype.appendDataChunk = original;
      }
      const bound = (engine as unknown as { db: { connect(): Promise<InstanceType<typeof DuckDBConnection>> } }).db;
      const tails = async () => {
        const c = await bound.connect(); // not engine.query: its refresh would read the segment anew
        try {
          return (await c.runAndReadAll("SELECT table_name FROM duckdb_tables() WHERE database_name = 'tails' ORDER BY 1")).getRowObjectsJS().map((t) => t.table_name);
        } finally {
          c.closeSync();
        }
      };
      expect(await tails()).toEqual(["tail_1", "tail_1_3"]); // the view's, and the last attempt's
      expect(await counts()).toEqual({ n: 10_003, d: 10_003, m: 10_003 });
      await counts(); // the old table is dropped by the refresh after the one that left it out of the view
      expect(await tails()).toEqual(["tail_1_4"]);
      // The same during a follow (which leaves replacing the table to the refresh before a query).
      appendFileSync(seg, range(10_004, 20_003));
      failThirdChunk();
      await expect(engine.followTail()).rejects.toThrow(/injected/);
      DuckDBAppender.prototype.appendDataChunk = original;
      expect(await engine.followTail()).toBe(0); // not read again by a follow: the table waits for a query's refresh
      expect(await counts()).toEqual({ n: 20_003, d: 20_003, m: 20_003 });
      engine.close();
    } finally {
      DuckDBAppender.prototype.appendDataChunk = original;
      tmp.remove();
    }
  });

  it("reads the spool's new records between queries (followTail), and leaves tables and the view to the refresh before a query", async () => {
    const { appendFileSync, truncateSync } = await import("node:fs");
    const { tmp, spoolDir, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat([1, 2].map(rec)));
      const engine = await open(tmp.dir);
      const { statSync } = await import("node:fs");
      const seqs = async () => (await engine.query("SELECT seq FROM messages ORDER BY seq")).rows.map((r) => Number(r.seq));
      expect(await seqs()).toEqual([1, 2]);
      expect(engine.tailRecordsRead).toBe(2); // read by the query's refresh: counted too (it paces the follows)
      // New records are read by followTail, before any query refreshed.
      appendFileSync(seg, Buffer.concat([3, 4, 5].map(rec)));
      expect(engine.tailRead()).toEqual({ "0000000000000001.wal": rec(1).length * 2 });
      expect(await engine.followTail()).toBe(3);
      expect(engine.tailRead()).toEqual({ "0000000000000001.wal": statSync(seg).size });
      expect(await engine.followTail()).toBe(0);
      // A second segment appears: followTail reads it too.
      const seg2 = join(spoolDir, "0000000000000002.wal");
      writeFileSync(seg2, Buffer.concat([6, 7].map(rec)));
      expect(await engine.followTail()).toBe(2);
      expect(engine.tailRecordsRead).toBe(7);
      expect(engine.tailRead()).toEqual({ "0000000000000001.wal": statSync(seg).size, "0000000000000002.wal": statSync(seg2).size });
      // A cut-back segment and a compacted one are left to the refresh before the next query:
      // the tables a refreshed view names stay until then.
      truncateSync(seg2, rec(6).length);
      appendFileSync(seg2, rec(8));
      await engine.followTail();
      await compactSegments([seg], join(tmp.dir, "logs"));
      await engine.followTail();
      expect(Object.keys(engine.tailRead())).toEqual(["0000000000000001.wal", "0000000000000002.wal"]);
      expect(await seqs()).toEqual([1, 2, 3, 4, 5, 6, 8]);
      expect(engine.tailRead()).toEqual({ "0000000000000002.wal": statSync(seg2).size });
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("paces the query process's follows by every record read, the queries' refreshes' included", async () => {
    const { nextFollowWait } = await import("../app/analytics/query-process.ts");
    // 100,000 msg/s, all read by queries' refreshes while the follow found nothing: the follows still
    // come every 20 ms (the old pace, set by the follow's own reads, backed off to 1 s here).
    expect(nextFollowWait(1000, 1000, 100_000, 0)).toBe(20);
    expect(nextFollowWait(20, 20, 2_000, 0)).toBe(20);
    expect(nextFollowWait(20, 20, 2_000, null)).toBe(20);
    // 1,000 msg/s: about 2,000 records a read, at most 1 s apart.
    expect(nextFollowWait(20, 1000, 1_000, 1_000)).toBe(1000);
    expect(nextFollowWait(20, 100, 1_000, 1_000)).toBe(200);
    // Nothing came: the wait doubles up to 2 s; skipped with nothing new, it stays.
    expect(nextFollowWait(1000, 1000, 0, 0)).toBe(2000);
    expect(nextFollowWait(2000, 2000, 0, 0)).toBe(2000);
    expect(nextFollowWait(300, 300, 0, null)).toBe(300);
    // Never faster than every 20 ms, however many records came (a backlog read at once, no time between).
    expect(nextFollowWait(20, 0, 10_000_000, 10_000_000)).toBe(20);
    expect(nextFollowWait(20, 0, 10_000_000, null)).toBe(20);
    // Idle from the fastest pace: back to a read every 2 s within seven reads, and there it stays.
    const waits: number[] = [];
    for (let w = 20, i = 0; i < 10; i++) waits.push((w = nextFollowWait(w, w, 0, 0)));
    expect(waits).toEqual([40, 80, 160, 320, 640, 1280, 2000, 2000, 2000, 2000]);
  });

  it("runs repeated SQL on its kept statement, with answers that follow the data, and prepares anew what uses the time or parameters", async () => {
    const { appendFileSync } = await import("node:fs");
    const { tmp, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat([1, 2].map(rec)));
      const engine = await open(tmp.dir);
      const count = async () => (await engine.query("SELECT count(*)::INT AS n, max(seq)::INT AS last FROM messages")).rows[0];
      expect(await count()).toEqual({ n: 2, last: 2 });
      const { prepared } = engine.planStats;
      // New records: the kept statement runs again and sees them.
      appendFileSync(seg, rec(3));
      expect(await count()).toEqual({ n: 3, last: 3 });
      expect(engine.planStats.prepared).toBe(prepared);
      expect(engine.planStats.reused).toBeGreaterThanOrEqual(1);
      // The segment compacted (the view changes): prepared once more over the new view, then kept again.
      await compactSegments([seg], join(tmp.dir, "logs"));
      expect(await count()).toEqual({ n: 3, last: 3 });
      expect(engine.planStats.prepared).toBe(prepared + 1);
      const { reused } = engine.planStats;
      expect(await count()).toEqual({ n: 3, last: 3 });
      expect(engine.planStats.reused).toBe(reused + 1);
      // now() is fixed when a statement is prepared: such SQL is prepared each time.
      const now = async () => (await engine.query("SELECT strftime(now(), '%H:%M:%S.%f') AS t")).rows[0]!.t;
      const first = await now();
      await Bun.sleep(5);
      expect(await now()).not.toBe(first);
      // A kept statement's parameters do not carry over to a run that gives none.
      expect((await engine.query("SELECT $1::INT AS x", { params: [5] })).rows).toEqual([{ x: 5 }]);
      expect((await engine.query("SELECT $1::INT AS x", { params: [6] })).rows).toEqual([{ x: 6 }]);
      await expect(engine.query("SELECT $1::INT AS x")).rejects.toThrow();
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("answers right from a kept statement once the tail holds values past those it was planned over (ORDER BY, WHERE, GROUP BY on seq)", async () => {
    const { appendFileSync } = await import("node:fs");
    const { tmp, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat(Array.from({ length: 200 }, (_, i) => rec(i + 1))));
      const engine = await open(tmp.dir);
      const sqls = {
        sorted: "SELECT seq::INT AS seq, data FROM messages ORDER BY seq DESC LIMIT 2",
        filtered: "SELECT count(*)::INT AS n FROM messages WHERE seq > 300",
        grouped: "SELECT seq::INT AS seq, count(*)::INT AS n FROM messages GROUP BY seq ORDER BY seq DESC LIMIT 1",
      };
      const ask = async () => {
        const out: Record<string, unknown> = {};
        for (const [k, sql] of Object.entries(sqls)) out[k] = (await engine.query(sql)).rows; // one after another: one connection, its kept statements
        return out;
      };
      expect(await ask()).toEqual({ sorted: [{ seq: 200, data: "m200" }, { seq: 199, data: "m199" }], filtered: [{ n: 0 }], grouped: [{ seq: 200, n: 1 }] });
      // Seqs past 255 (a byte past the first range), in the same table: the same statements, run again.
      appendFileSync(seg, Buffer.concat(Array.from({ length: 200 }, (_, i) => rec(i + 201))));
      const { prepared, reused } = engine.planStats;
      expect(await ask()).toEqual({ sorted: [{ seq: 400, data: "m400" }, { seq: 399, data: "m399" }], filtered: [{ n: 100 }], grouped: [{ seq: 400, n: 1 }] });
      expect(engine.planStats.prepared).toBe(prepared);
      expect(engine.planStats.reused).toBe(reused + 3);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("answers a kept statement from a Parquet file rewritten in place under the same view (no new plan, the new rows)", async () => {
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const { readdirSync, renameSync } = await import("node:fs");
    const { tmp, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat([1, 2, 3].map(rec)));
      const logsDir = join(tmp.dir, "logs");
      await compactSegments([seg], logsDir);
      const partition = join(logsDir, "stream=t", "date=2026-11-23");
      const [file] = readdirSync(partition).filter((f) => f.endsWith(".parquet"));
      const engine = await open(tmp.dir);
      const sql = "SELECT count(*)::INT AS n, max(seq)::INT AS last, string_agg(data, ',' ORDER BY seq) AS data FROM messages";
      const ask = async () => (await engine.query(sql)).rows[0];
      expect(await ask()).toEqual({ n: 3, last: 3, data: "m1,m2,m3" });
      const { prepared } = engine.planStats;
      // The same file name, other rows (more of them, in another row group layout): the view is unchanged,
      // the kept statement runs again and reads the file as it is now.
      const db = await DuckDBInstance.create(":memory:");
      const c = await db.connect();
      await c.run(`COPY (SELECT make_timestamp(${Date.UTC(2026, 10, 23) * 1000} + range) AS ts, range + 10 AS seq, 'o' AS origin, 'text' AS kind, 'r' || (range + 10) AS data FROM range(5000))
        TO '${join(partition, "new.tmp")}' (FORMAT parquet, ROW_GROUP_SIZE 1000)`);
      c.closeSync();
      db.closeSync();
      renameSync(join(partition, "new.tmp"), join(partition, file!));
      const [again] = (await engine.query(sql)).rows;
      expect(again).toMatchObject({ n: 5000, last: 5009 });
      expect(engine.planStats.prepared).toBe(prepared);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("under queries that always overlap, compaction from the engine's table counts each message once, no query misses a table, and the table still goes", async () => {
    const { tmp, spoolDir, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat(Array.from({ length: 20_000 }, (_, i) => rec(i + 1))));
      writeFileSync(join(spoolDir, "0000000000000002.wal"), rec(20_001));
      const engine = await open(tmp.dir);
      const tail1 = async () => (await engine.query("SELECT count(*)::INT AS n FROM duckdb_tables() WHERE table_name = 'tail_1'")).rows[0]!.n;
      expect(await tail1()).toBe(1);
      let done = false;
      let running = 0;
      const errors: string[] = [];
      const answers = new Set<string>();
      const worker = async (i: number) => {
        // Staggered starts, then each starts its next query as soon as its last ends.
        await Bun.sleep(i * 3);
        while (!done) {
          running++;
          try {
            const sql = i % 2 ? "SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages" : "SELECT count(seq)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages WHERE seq > 0";
            answers.add(JSON.stringify((await engine.query(sql)).rows[0]));
          } catch (err) {
            errors.push((err as Error).message);
          } finally {
            running--;
          }
        }
      };
      const workers = [0, 1, 2, 3].map(worker);
      while (running === 0) await Bun.sleep(1);
      const r = await compactSegments([seg], join(tmp.dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
      expect(r).toMatchObject({ segments: 1, rows: 20_000, readFromFile: 0, problems: [] });
      // The table goes while the others keep querying.
      const deadline = Date.now() + 30_000;
      while ((await tail1()) !== 0 && Date.now() < deadline) await Bun.sleep(5);
      done = true;
      await Promise.all(workers);
      expect(await tail1()).toBe(0);
      expect(errors).toEqual([]);
      expect([...answers]).toEqual([JSON.stringify({ n: 20_001, d: 20_001 })]);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("counts a segment once when compaction and a merge of its partition both finish while a refresh reads the spool", async () => {
    const { mergeClosedPartitions } = await import("../app/log/merge.ts");
    const { appendFileSync } = await import("node:fs");
    const { tmp, spoolDir, rec } = await segmentFixture();
    try {
      const logsDir = join(tmp.dir, "logs");
      const [a, b, c] = [1, 2, 3].map((n) => join(spoolDir, `000000000000000${n}.wal`));
      writeFileSync(a!, Buffer.concat([1, 2, 3].map(rec)));
      await compactSegments([a!], logsDir); // a file of this closed day's partition already
      writeFileSync(b!, Buffer.concat([4, 5, 6].map(rec)));
      writeFileSync(c!, rec(7));
      const engine = await open(tmp.dir);
      const sql = "SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages";
      expect((await engine.query(sql)).rows[0]).toEqual({ n: 7, d: 7 });
      // The next refresh stops at the segment being written (new records there) after it went past b.
      appendFileSync(c!, rec(8));
      const admin = (engine as unknown as { admin: { createAppender: (...at: string[]) => Promise<unknown> } }).admin;
      const createAppender = admin.createAppender.bind(admin);
      let reached!: () => void;
      const atC = new Promise<void>((r) => { reached = r; });
      let go!: () => void;
      const gate = new Promise<void>((r) => { go = r; });
      admin.createAppender = async (...at) => {
        reached();
        await gate;
        return createAppender(...at);
      };
      const asked = engine.query(sql);
      await atC;
      // Meanwhile b is compacted and the day's files merged into one, which holds b's records under no segment's name.
      await compactSegments([b!], logsDir);
      expect(await mergeClosedPartitions(logsDir, "2026-12-01")).toHaveLength(1);
      admin.createAppender = createAppender;
      go();
      expect((await asked).rows[0]).toEqual({ n: 8, d: 8 });
      expect((await engine.query(sql)).rows[0]).toEqual({ n: 8, d: 8 });
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("lets go of Parquet files merged away or removed by retention: kept statements hold no deleted file open", async () => {
    const { readdirSync, readlinkSync, rmSync } = await import("node:fs");
    const { markLogChanged } = await import("../app/log/partitions.ts");
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      const logsDir = join(tmp.dir, "logs");
      for (let day = 20; day < 24; day++) {
        const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
        for (let i = 0; i < 50; i++) spool.append({ stream: `s${i % 2}`, ts: Date.UTC(2026, 10, day) * 1000 + i, seq: day * 100 + i, origin: "o", data: `m${i}`, size: 2 });
        spool.close();
        await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), logsDir);
      }
      const open_ = () => readdirSync("/proc/self/fd").map((f) => { try { return readlinkSync(`/proc/self/fd/${f}`); } catch { return ""; } }).filter((l) => l.includes(logsDir));
      const engine = await open(tmp.dir);
      // A dashboard's panels: kept statements, several connections at once.
      const panels = Array.from({ length: 6 }, (_, i) => `SELECT count(*)::INT AS n, max(seq)::INT AS last FROM messages WHERE stream = 's${i % 2}' AND seq % ${i + 2} = 0`);
      await Promise.all(panels.map((sql) => engine.query(sql)));
      for (let round = 0; round < 2; round++) for (const sql of panels) await engine.query(sql);
      expect(engine.planStats.reused).toBeGreaterThan(0);
      // Retention removes the oldest day (the first file of the view: the one a statement's reader holds).
      for (const s of ["s0", "s1"]) rmSync(join(logsDir, `stream=${s}`, "date=2026-11-20"), { recursive: true });
      markLogChanged(logsDir);
      expect((await engine.query("SELECT count(*)::INT AS n, min(date)::VARCHAR AS first FROM messages")).rows).toEqual([{ n: 150, first: "2026-11-21" }]);
      expect(open_().filter((l) => l.endsWith("(deleted)"))).toEqual([]);
      // The panels answer from the new view.
      expect((await engine.query(panels[0]!)).rows[0]!.n).toBe(Array.from({ length: 3 }, (_, d) => Array.from({ length: 25 }, (_, k) => (21 + d) * 100 + 2 * k)).flat().filter((x) => x % 2 === 0).length);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("keeps a compacted segment's table while a query that may have bound it runs, and drops it after", async () => {
    const { tmp, spoolDir, seg, rec } = await segmentFixture();
    try {
      writeFileSync(seg, Buffer.concat(Array.from({ length: 10_000 }, (_, i) => rec(i + 1))));
      writeFileSync(join(spoolDir, "0000000000000002.wal"), rec(10_001));
      const engine = await open(tmp.dir);
      const tails = async () => (await engine.query("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'tail_%' ORDER BY 1")).rows.map((r) => r.table_name);
      expect(await tails()).toEqual(["tail_1", "tail_2"]);
      // A streamed answer over the tail, held after its first chunk (a slow reader).
      let gate!: () => void;
      const held = new Promise<void>((r) => { gate = r; });
      let started!: () => void;
      const streaming = new Promise<void>((r) => { started = r; });
      let seen = 0;
      const stream = engine.streamRows("SELECT seq FROM messages", { rowLimit: 100_000, timeoutMs: 30_000 }, async (_c, rows) => {
        seen += rows.length;
        if (rows.length > 0 && seen === rows.length) {
          started();
          await held;
        }
      });
      await streaming;
      // Compaction writes segment 1 from the engine's table (its refresh comes while the stream runs),
      // then another query's refresh finds the segment gone: out of the view, but not dropped yet.
      const r = await compactSegments([seg], join(tmp.dir, "logs"), { loaded: (s) => engine.loadedSegment(s) });
      expect(r).toMatchObject({ segments: 1, rows: 10_000 });
      expect(await tails()).toEqual(["tail_1", "tail_2"]);
      const [count] = (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages")).rows;
      expect(count).toEqual({ n: 10_001, d: 10_001 });
      expect(await tails()).toEqual(["tail_1", "tail_2"]);
      gate();
      expect(await stream).toBe(10_001);
      expect(seen).toBe(10_001);
      // No query holds it now: the next refresh drops it.
      expect(await tails()).toEqual(["tail_2"]);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("gives a whole answer run again (a listed file gone) only what is left of its time limit, and names the limit itself", async () => {
    const { readdirSync, rmSync } = await import("node:fs");
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      const logsDir = join(tmp.dir, "logs");
      for (const first of [1, 11]) {
        const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
        for (let i = first; i < first + 10; i++) spool.append({ stream: "m", ts: Date.UTC(2026, 10, 23) * 1000 + i, seq: i, origin: "t", data: `m${i}`, size: 2 });
        spool.close();
        await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), logsDir);
      }
      const partition = join(logsDir, "stream=m", "date=2026-11-23");
      const files = readdirSync(partition).filter((f) => f.endsWith(".parquet")).sort();
      expect(files).toHaveLength(2);
      const engine = await open(tmp.dir);
      try {
        const sql = "SELECT count(*)::INT AS n FROM messages";
        expect((await engine.query(sql)).rows).toEqual([{ n: 20 }]);
        // A listed file removed by hand (no change mark: still listed). The first run spends 1.2 s of its
        // 2 s before DuckDB starts, then finds the file gone; the run again over a fresh listing has 0.8 s
        // left, and its reader takes 1.2 s over the columns.
        rmSync(join(partition, files[1]!));
        let runs = 0;
        const at = Date.now();
        const outcome = await engine.streamRows(sql, {
          rowLimit: 10, timeoutMs: 2_000, whole: true,
          onVersion: () => {
            if (++runs === 1) Bun.sleepSync(1_200);
          },
        }, async (_columns, rows) => {
          if (rows.length === 0 && runs === 2) await Bun.sleep(1_200);
        }).then((n) => `${n} rows`, (e: Error) => e.message);
        expect(runs).toBe(2);
        expect(outcome).toBe("the query took longer than 2 s and was stopped");
        expect(Date.now() - at).toBeLessThan(3_000); // not 2 s afresh for the second run
        // With time enough, the same answers, from the file left.
        expect(await engine.streamRows(sql, { rowLimit: 10, timeoutMs: 10_000, whole: true }, () => {})).toBe(1);
      } finally {
        engine.close();
      }
    } finally {
      tmp.remove();
    }
  });

  it("reuses its listing of the Parquet folder, and lists again when compaction or a merge changed it, before a streamed answer, and when a listed file is gone", async () => {
    const { mergeClosedPartitions } = await import("../app/log/merge.ts");
    const { readdirSync } = await import("node:fs");
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      const logsDir = join(tmp.dir, "logs");
      // Compaction runs of the same closed day and stream: a file each in one partition.
      const compact = async (first: number) => {
        const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
        for (let i = first; i < first + 10; i++) spool.append({ stream: "m", ts: Date.UTC(2026, 10, 23) * 1000 + i, seq: i, origin: "t", data: `m${i}`, size: 2 });
        spool.close();
        await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), logsDir);
      };
      await compact(1);
      await compact(11);
      const partition = join(logsDir, "stream=m", "date=2026-11-23");
      expect(readdirSync(partition).filter((f) => f.endsWith(".parquet"))).toHaveLength(2);
      const engine = await open(tmp.dir);
      const count = async () => (await engine.query("SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM messages")).rows[0];
      expect(await count()).toEqual({ n: 20, d: 20 });
      // The merge replaces both files by one; the engine's listing still names the old ones:
      // a whole answer finds them gone and runs again over a fresh listing.
      expect(await mergeClosedPartitions(logsDir, "2026-12-01")).toEqual([partition]);
      expect(readdirSync(partition).filter((f) => f.endsWith(".parquet"))).toEqual([expect.stringMatching(/^merged_\d+\.parquet$/)]);
      expect(await count()).toEqual({ n: 20, d: 20 });
      expect(await count()).toEqual({ n: 20, d: 20 });
      // A third compaction run: its segment came and went, so the folder is listed again.
      await compact(21);
      expect(await count()).toEqual({ n: 30, d: 30 });
      // Merged again; a streamed answer cannot be retried once rows went out, so it lists afresh first.
      expect(await mergeClosedPartitions(logsDir, "2026-12-01")).toEqual([partition]);
      const streamed: number[] = [];
      expect(await engine.streamRows("SELECT seq FROM messages ORDER BY seq", { rowLimit: 100, timeoutMs: 10_000 }, (_c, rows) => { streamed.push(...rows.map((r) => Number(r.seq))); })).toBe(30);
      expect(streamed).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      // A whole answer (the query process's JSON, CSV…: every row kept until the end) does not list the
      // folder before it runs; it is retried over a fresh listing when a listed file is gone, from the
      // columns again (the caller starts over there).
      await compact(31);
      expect(await count()).toEqual({ n: 40, d: 40 });
      const listing = () => (engine as unknown as { listing: { at: number } }).listing;
      const wholeRun = async () => {
        const rows: number[] = [];
        const sent = await engine.streamRows("SELECT seq FROM messages ORDER BY seq", { rowLimit: 100, timeoutMs: 10_000, whole: true }, (_c, chunk) => {
          if (chunk.length === 0) rows.length = 0;
          rows.push(...chunk.map((r) => Number(r.seq)));
        });
        expect(sent).toBe(40);
        expect(rows).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      };
      const before = (listing().at -= 1);
      await wholeRun();
      expect(listing().at).toBe(before); // not listed again
      await engine.streamRows("SELECT seq FROM messages", { rowLimit: 100, timeoutMs: 10_000 }, () => {});
      expect(listing().at).toBeGreaterThan(before); // a streamed answer lists afresh
      expect(await mergeClosedPartitions(logsDir, "2026-12-01")).toEqual([partition]);
      expect(await count()).toEqual({ n: 40, d: 40 });
      const { renameSync } = await import("node:fs");
      // Renamed by hand (no change mark): the listing still names the old file, and the whole answer finds it gone.
      const [newest] = readdirSync(partition).filter((f) => f.endsWith(".parquet"));
      renameSync(join(partition, newest!), join(partition, "moved.parquet"));
      await wholeRun();
      // Changed by hand (no change mark): a listed file renamed. The query finds it gone and lists again.
      const [merged] = readdirSync(partition).filter((f) => f.endsWith(".parquet"));
      renameSync(join(partition, merged!), join(partition, "by-hand.parquet"));
      expect(await count()).toEqual({ n: 40, d: 40 });
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("leaves segments with no message out of the view, so a quiet log is read from Parquet alone", async () => {
    const tmp = await dataDir(); // 30 messages in Parquet, 10 in a spool segment
    try {
      const spoolDir = join(tmp.dir, "spool");
      // Compact the tail too, then open the spool again: its new segment holds only its marks record.
      await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(tmp.dir, "logs"));
      const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      const engine = await open(tmp.dir);
      const view = async () => String((await engine.query("SELECT sql FROM duckdb_views() WHERE view_name = 'messages'")).rows[0]!.sql);
      const count = async () => (await engine.query("SELECT count(*)::INT AS n FROM messages")).rows[0];
      expect(await count()).toEqual({ n: 40 });
      expect(await view()).not.toContain("tail_");
      expect(await view()).not.toContain("UNION");
      // The first message in the segment brings its table into the view, even when the query comes
      // while a followTail (which leaves the view alone) is reading that very message.
      spool.append({ stream: "spin30", ts: Date.UTC(2026, 10, 23) * 1000 + 99, seq: 41, origin: "t", data: "new", size: 3 });
      await spool.durable();
      const following = engine.followTail();
      expect(await count()).toEqual({ n: 41 });
      await following;
      expect(await view()).toContain("UNION ALL");
      spool.close();
      engine.close();
    } finally {
      tmp.remove();
    }
  });
});
