import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { QueryEngine } from "../app/analytics/engine.ts";
import { cacheable, ResultCache } from "../app/analytics/result-cache.ts";
import { silentLogger } from "../app/core/logger.ts";
import { compactSegments } from "../app/log/compaction.ts";
import { Spool } from "../app/log/spool.ts";
import { startTestServer, tempDir } from "./support/server.ts";

// DuckDB and a query process: more than Bun's 5 s default.
setDefaultTimeout(60_000);

describe("which SQL may be answered from the cache", () => {
  it("keeps SQL over the view, and never SQL using the clock, randomness, files or DuckDB's own state", () => {
    for (const sql of [
      "SELECT stream, count(*) AS n FROM messages GROUP BY 1",
      "SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS t, avg((data::JSON->>'v')::INT) AS v FROM messages WHERE stream = 'spin7' AND date = DATE '2026-11-24' GROUP BY 1 ORDER BY 1",
      "SELECT * FROM messages WHERE stream = ? AND seq > ?",
    ]) expect(cacheable(sql)).toBe(true);
    for (const sql of [
      "SELECT count(*) FROM messages WHERE ts > now() - INTERVAL 1 HOUR",
      "SELECT count(*) FROM messages WHERE ts > NOW ( ) - INTERVAL 1 HOUR",
      "SELECT random() AS r",
      "SELECT count(*) FROM messages WHERE date = current_date",
      "SELECT count(*) FROM messages WHERE date = today()",
      "SELECT gen_random_uuid()",
      "SELECT uuid()",
      "SELECT max(age(ts)) FROM messages",
      "SELECT get_current_timestamp()",
      "SELECT localtimestamp",
      "SELECT * FROM read_parquet('logs/**/*.parquet')",
      "SELECT * FROM 'logs/stream=a/date=2026-11-24/seg1_0_0.parquet'",
      'SELECT * FROM "export/x.parquet"',
      "SELECT * FROM glob('*')",
      "SELECT * FROM duckdb_settings()",
      "SELECT * FROM parquet_metadata('x')",
      // DuckDB's own macros over the clock, and the transaction number: not named like a clock.
      "SELECT count(*) FROM messages WHERE ts > ago(INTERVAL 1 HOUR)",
      "SELECT pg_postmaster_start_time()",
      "SELECT pg_conf_load_time()",
      "SELECT txid_current()",
    ]) expect({ sql, cacheable: cacheable(sql) }).toEqual({ sql, cacheable: false });
  });
});

describe("the answer cache", () => {
  it("stays within its bytes, drops the least recently used first, and forgets everything when the data version changes", () => {
    const cache = new ResultCache(10_000);
    const body = "x".repeat(1000); // 2,000 bytes and a bit each
    expect(cache.get("a", "1")).toBeUndefined();
    for (const k of ["a", "b", "c", "d"]) cache.set(k, "1", body, 1);
    expect(cache.get("a", "1")?.body).toBe(body); // a is now the most recently used
    cache.set("e", "1", body, 1); // over 10,000: the least recently used (b) goes
    expect(cache.bytes).toBeLessThanOrEqual(10_000);
    expect(cache.get("b", "1")).toBeUndefined();
    expect(cache.get("a", "1")?.rows).toBe(1);
    // Too big for a quarter of the cache: not kept.
    cache.set("huge", "1", "y".repeat(2000), 1);
    expect(cache.get("huge", "1")).toBeUndefined();
    // Another version: nothing of the old one is served, and an answer computed at the old one is not kept.
    expect(cache.get("a", "2")).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
    cache.set("late", "1", body, 1);
    expect(cache.get("late", "2")).toBeUndefined();
    // Size 0: nothing is kept.
    const off = new ResultCache(0);
    expect(off.get("a", "1")).toBeUndefined();
    off.set("a", "1", "b", 1);
    expect(off.get("a", "1")).toBeUndefined();
  });
});

describe("the engine's data version", () => {
  it("stays while nothing changes and goes up with every record read from the spool and with compaction", async () => {
    const tmp = tempDir();
    const spoolDir = join(tmp.dir, "spool");
    const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
    const engine = await QueryEngine.open({ logsDir: join(tmp.dir, "logs"), spoolDir, tempDir: join(tmp.dir, "tmp", "duckdb") });
    try {
      let seq = 0;
      const append = async () => {
        spool.append({ stream: "v", ts: Date.UTC(2026, 10, 23) * 1000 + ++seq, seq, origin: "t", data: `{"v":${seq}}`, size: 8 });
        await spool.durable();
      };
      await append();
      const v1 = await engine.dataVersion();
      expect(await engine.dataVersion()).toBe(v1);
      await append();
      await engine.followTail(); // read between queries: the version moves with it
      const v2 = await engine.dataVersion();
      expect(v2).not.toBe(v1);
      expect(await engine.dataVersion()).toBe(v2);
      await append();
      const v3 = await engine.dataVersion();
      expect(v3).not.toBe(v2);
      // Compaction moves the sealed segment to Parquet: same rows, other tables and files.
      spool.close();
      await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(tmp.dir, "logs"));
      const v4 = await engine.dataVersion();
      expect(v4).not.toBe(v3);
      expect((await engine.query("SELECT count(*)::INT AS n FROM messages")).rows).toEqual([{ n: 3 }]);
      expect(await engine.dataVersion()).toBe(v4);
    } finally {
      engine.close();
      spool.close();
      tmp.remove();
    }
  });
});

describe("answers from the cache through POST /api/query", () => {
  it("serves the same SQL from the cache until a message comes, then answers anew; never caches random(); query_cache_mb 0 turns it off", async () => {
    const srv = await startTestServer({ query_timeout_seconds: 20 });
    try {
      const ask = async (sql: string) => {
        const r = await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format: "json" }) });
        expect(r.status).toBe(200);
        return r.json();
      };
      const cached = async () => Number(/^switchyard_queries_cached_total (\d+)$/m.exec(await (await fetch(`${srv.url}/metrics`, { headers: srv.adminHeaders })).text())![1]);
      const post = async (body: string) => expect((await fetch(`${srv.url}/api/streams/cache/messages`, { method: "POST", body, headers: { ...srv.adminHeaders, "content-type": "text/plain" } })).status).toBeLessThan(300);
      const sql = "SELECT count(*)::INT AS n, string_agg(data, ',' ORDER BY seq) AS all FROM messages WHERE stream = 'cache'";
      await post("one");
      expect(await ask(sql)).toEqual([{ n: 1, all: "one" }]);
      const before = await cached();
      expect(await ask(sql)).toEqual([{ n: 1, all: "one" }]);
      expect(await cached()).toBe(before + 1);
      // A message acknowledged: the same SQL answers with it, not from the cache.
      await post("two");
      expect(await ask(sql)).toEqual([{ n: 2, all: "one,two" }]);
      expect(await cached()).toBe(before + 1);
      expect(await ask(sql)).toEqual([{ n: 2, all: "one,two" }]);
      expect(await cached()).toBe(before + 2);
      let all = "one,two";
      for (let i = 0; i < 5; i++) {
        await post(`m${i}`);
        all += `,m${i}`;
        expect(await ask(sql)).toEqual([{ n: 3 + i, all }]);
      }
      // random() is run every time.
      const rnd = "SELECT random() AS r FROM messages WHERE stream = 'cache' LIMIT 1";
      const mark = await cached();
      const [a, b] = [await ask(rnd), await ask(rnd)];
      expect(a).not.toEqual(b);
      expect(await cached()).toBe(mark);
      // Nor ago() (a macro over the clock) or txid_current() (a new number each run), with the data unchanged.
      const txid = "SELECT txid_current()::VARCHAR AS t FROM messages WHERE stream = 'cache' LIMIT 1";
      expect(await ask(txid)).not.toEqual(await ask(txid));
      const recent = "SELECT count(*)::INT AS n FROM messages WHERE stream = 'cache' AND ts > ago(INTERVAL 1 HOUR)";
      expect(await ask(recent)).toEqual([{ n: 7 }]);
      expect(await ask(recent)).toEqual([{ n: 7 }]);
      expect(await cached()).toBe(mark);
      // Off: the same SQL twice runs twice.
      const off = await fetch(`${srv.url}/api/settings`, { method: "PATCH", headers: srv.adminHeaders, body: JSON.stringify({ query_cache_mb: 0 }) });
      expect(off.status).toBe(200);
      await ask(sql);
      await ask(sql);
      expect(await cached()).toBe(mark);
    } finally {
      await srv.close();
    }
  });
});
