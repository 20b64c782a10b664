import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { liveTraffic } from "./support/client.ts";
import { readFileSync } from "node:fs";
import { SettingsStore } from "../app/config/store.ts";
import type { Settings } from "../app/config/settings.ts";
import { spawnServe } from "./support/cli.ts";
import { adminHeadersFor, tempDir, waitFor } from "./support/server.ts";

// Real servers, DuckDB in child processes, and queries that run into their limits.
setDefaultTimeout(120_000);

/** A `switchyard serve` subprocess with `settings`, plus helpers to use it. */
async function serveWith(settings: Partial<Settings>, env?: Record<string, string>) {
  const tmp = tempDir();
  const store = SettingsStore.open(tmp.dir);
  store.update(settings);
  store.close();
  const srv = await spawnServe(tmp.dir, env);
  const url = `http://127.0.0.1:${srv.port}`;
  const admin = await adminHeadersFor(tmp.dir);
  return {
    ...srv, url, dir: tmp.dir, admin,
    ask: (sql: string, format = "json") => fetch(`${url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format }), headers: admin }),
    rss: () => Number(readFileSync(`/proc/${srv.p.pid}/statm`, "utf8").split(" ")[1]) * 4096,
    async stop() {
      srv.p.kill("SIGTERM");
      const code = await srv.p.exited;
      tmp.remove();
      return code;
    },
  };
}


describe("queries that DuckDB cannot stop", () => {
  it("runs a query that waited for the slot of such a query on a new process, JSON or streamed, rather than failing it with the kill", async () => {
    const s = await serveWith({ query_timeout_seconds: 2, query_concurrency: 1, query_processes: 1 });
    try {
      expect((await s.ask("SELECT 1 AS x")).status).toBe(200);
      const outcomes: Record<string, string> = {};
      for (const format of ["json", "ndjson"]) {
        const slow = s.ask("SELECT levenshtein(repeat('a', 60000), repeat('b', 60000)) AS d", format);
        await Bun.sleep(300);
        const waiting = s.ask("SELECT 42 AS answer", format); // queued: the one slot is taken
        const [a, b] = await Promise.all([slow, waiting]);
        outcomes[format] = `${a.status} ${(await a.text()).includes("took longer than 2 s")} / ${b.status} ${(await b.text()).trim()}`;
      }
      expect(outcomes).toEqual({ json: '400 true / 200 [{"answer":42}]', ndjson: '400 true / 200 {"answer":42}' });
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("kills the query process (not the hub) when a query outlives its limit, through /api/query and GET /grafana/json", async () => {
    const s = await serveWith({ query_timeout_seconds: 2 });
    try {
      const hubPid = s.p.pid;
      const pending = s.ask("SELECT levenshtein(repeat('a', 60000), repeat('b', 60000)) AS d");
      // While it runs, the hub answers and carries live traffic.
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      await liveTraffic(s.url, "during-levenshtein");
      const res = await pending;
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toContain("took longer than 2 s");
      const grafana = await fetch(`${s.url}/grafana/json?sql=${encodeURIComponent("SELECT levenshtein(repeat('a', 60000), repeat('b', 60000)) AS d")}`, { headers: s.admin });
      expect(grafana.status).toBe(400);
      expect((await grafana.json()).error.message).toContain("took longer than 2 s");
      const huge = await fetch(`${s.url}/grafana/json?sql=${encodeURIComponent("SELECT repeat('a', 1500000000) AS x")}`, { headers: s.admin });
      expect(huge.status).toBeGreaterThanOrEqual(400);
      expect((await huge.json()).error.message).toMatch(/query failed: .*(memory|larger than|Out of Memory|took longer)/i);
      // The same hub process, still serving: queries, health and live traffic.
      expect(s.p.exitCode).toBeNull();
      expect(s.p.pid).toBe(hubPid);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      await liveTraffic(s.url, "after");
      const ok = await s.ask("SELECT 41 + 1 AS x");
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual([{ x: 42 }]);
      expect(s.log()).toContain("query process killed");
      // Where DuckDB used to finish the stopped query later and abort the whole server: 30 s of
      // health checks and live traffic after the kills, on the same process.
      const until = Date.now() + 30_000;
      for (let i = 0; Date.now() < until; i++) {
        expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
        if (i % 5 === 0) await liveTraffic(s.url, `later-${i}`);
        await Bun.sleep(1000);
      }
      expect(s.p.exitCode).toBeNull();
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("gives a clear error when the query process is killed mid-query, and the next query works", async () => {
    const { startTestServer } = await import("./support/server.ts");
    const { findQueryPool } = await import("../app/analytics/run-query.ts");
    const { join } = await import("node:path");
    const srv = await startTestServer({ query_timeout_seconds: 30 });
    try {
      const ask = (sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql }), headers: srv.adminHeaders });
      const pending = ask("SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE (a.range + b.range) % 7 = 3");
      const pool = () => findQueryPool(join(srv.dataDir, "logs"))!;
      await waitFor(() => findQueryPool(join(srv.dataDir, "logs"))?.active === 1 && pool().processes().length === 1, "the query to start");
      const pid = pool().processes()[0]!.pid;
      await pool().processes()[0]!.ready;
      process.kill(pid, "SIGKILL");
      const res = await pending;
      expect(res.status).toBe(500);
      expect((await res.json()).error.message).toContain("the query process exited unexpectedly");
      const next = await ask("SELECT 7 AS x");
      expect(next.status).toBe(200);
      expect(await next.json()).toEqual([{ x: 7 }]);
      expect(pool().processes()[0]!.pid).not.toBe(pid);
    } finally {
      await srv.close();
    }
  });
});

/**
 * Warms the query process, then reads 2 MB of `sql`'s NDJSON answer slowly
 * (`pauseMs` between reads) and a second more, watching the hub's RSS: the bytes
 * read and how much the hub grew over its warm baseline.
 */
async function readSlowly(s: Awaited<ReturnType<typeof serveWith>>, sql: string, pauseMs: number): Promise<{ read: number; grew: number }> {
  expect((await s.ask("SELECT 1 AS x")).status).toBe(200);
  const before = s.rss();
  const res = await s.ask(sql, "ndjson");
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  let read = 0;
  let peak = before;
  while (read < 2 * 1024 * 1024) {
    const { value, done } = await reader.read();
    if (done) break;
    read += value.byteLength;
    peak = Math.max(peak, s.rss());
    await Bun.sleep(pauseMs);
  }
  for (let i = 0; i < 10; i++) {
    peak = Math.max(peak, s.rss());
    await Bun.sleep(100);
  }
  await reader.cancel();
  return { read, grew: peak - before };
}

describe("query memory", () => {
  it("streams a big result to a slow reader a chunk at a time, without the hub's memory growing", async () => {
    const s = await serveWith({ query_timeout_seconds: 60, query_result_mb: 2048 });
    try {
      // 1 GB of NDJSON, in DuckDB chunks of about 2 MB, read slowly.
      const { read, grew } = await readSlowly(s, "SELECT repeat('x', 1000) AS x FROM range(1000000)", 20);
      expect(read).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      // Without backpressure the hub would have taken in the whole GB meanwhile.
      expect(grew).toBeLessThan(64 * 1024 * 1024);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("lets a slow reader take 2 MB of SELECT repeat('x', 1000000) FROM range(1000) with the hub's memory flat, when the limits allow the query", async () => {
    // Limits raised so DuckDB may build this 1 GB answer in the query process: the hub must still hold only a chunk or two.
    const s = await serveWith({ query_timeout_seconds: 120, query_result_mb: 2048, query_rss_mb: 8192 });
    try {
      const { read, grew } = await readSlowly(s, "SELECT repeat('x', 1000000) AS x FROM range(1000)", 50);
      expect(read).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      expect(grew).toBeLessThan(64 * 1024 * 1024);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("answers a 1 GB result (SELECT repeat('x', 1000000) FROM range(1000)) with a clear error, the hub's memory unchanged", async () => {
    const s = await serveWith({ query_timeout_seconds: 60 });
    try {
      expect((await s.ask("SELECT 1 AS x")).status).toBe(200);
      const before = s.rss();
      for (const format of ["ndjson", "json"]) {
        const res = await s.ask("SELECT repeat('x', 1000000) AS x FROM range(1000)", format);
        // Refused before the first row (the query process passed query_rss_mb), or cut by query_result_mb.
        const text = await res.text();
        if (res.status === 200) expect(text.trimEnd().split("\n").at(-1)).toMatch(/query_result_mb|query_rss_mb/);
        else expect(JSON.parse(text).error.message).toMatch(/query_result_mb|query_rss_mb/);
      }
      expect(s.rss() - before).toBeLessThan(64 * 1024 * 1024);
      const ok = await s.ask("SELECT 2 AS x");
      expect(await ok.json()).toEqual([{ x: 2 }]);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});

describe("a whole answer", () => {
  it("counts its own size against query_result_mb, keys and quotes included, in each format", async () => {
    const s = await serveWith({ query_timeout_seconds: 60, query_result_mb: 1 });
    try {
      // 30,000 small numbers under a long name: about 1.4 MB as JSON (the name in every row), 200 KB as CSV.
      const sql = "SELECT i AS a_rather_long_column_name_given_to_a_small_number FROM range(30000) t(i)";
      const json = await s.ask(sql, "json");
      const said = await json.text();
      const csv = await s.ask(sql, "csv");
      const lines = (await csv.text()).trimEnd().split("\n");
      expect({ json: json.status, said: said.includes("larger than 1 MB (query_result_mb)"), csv: csv.status, lines: lines.length, last: lines.at(-1) })
        .toEqual({ json: 400, said: true, csv: 200, lines: 30_001, last: "29999" });
      // Each under 0.3 MB as DuckDB holds its values, and several MB once written out. JSON and tables are whole answers: refused.
      const refused: Record<string, string> = {};
      for (const [name, sql, format] of [
        ["a list, as JSON", "SELECT [repeat('x', 1000) FOR i IN range(5000)] AS l", "json"],
        ["a struct, as a table", "SELECT {'a': repeat('x', 4000000)} AS s", "table"],
        ["control characters, escaped in JSON", "SELECT repeat(chr(1), 900000) AS c", "json"],
        ["one wide cell, padded in every row of a table", "SELECT CASE WHEN i = 0 THEN repeat('x', 100000) ELSE 'y' END AS c FROM range(200) t(i)", "table"],
        ["multi-byte characters, in UTF-8", "SELECT repeat('€', 400000) AS e", "json"],
      ]) {
        const r = await s.ask(sql!, format);
        refused[name!] = `${r.status} ${(await r.text()).includes("larger than 1 MB (query_result_mb)")}`;
      }
      expect(refused).toEqual({
        "a list, as JSON": "400 true", "a struct, as a table": "400 true", "control characters, escaped in JSON": "400 true",
        "one wide cell, padded in every row of a table": "400 true", "multi-byte characters, in UTF-8": "400 true",
      });
      // CSV and NDJSON are streamed: what went out stays, and the answer ends with the error line. 400,000 '€' are 1.2 MB.
      const streamed = await s.ask("SELECT repeat('€', 1000) AS e FROM range(400)", "ndjson");
      expect((await streamed.text()).trimEnd().split("\n").at(-1)).toContain("larger than 1 MB (query_result_mb)");
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("gives the same rows in every format over many chunks, quotes, new lines, lists, NULLs and UTF-8 included", async () => {
    const s = await serveWith({ query_timeout_seconds: 60 });
    try {
      const sql = `SELECT i, CASE i % 4 WHEN 0 THEN 'a,"b"' || chr(10) || 'c' WHEN 1 THEN NULL WHEN 2 THEN 'é ✓' ELSE '' END AS s, [i, i + 1] AS l FROM range(5000) t(i) ORDER BY i`;
      const text = async (format: string) => {
        const r = await s.ask(sql, format);
        expect(r.status).toBe(200);
        return r.text();
      };
      const rows = JSON.parse(await text("json")) as Record<string, unknown>[];
      expect(rows.length).toBe(5000);
      expect(rows.slice(0, 4)).toEqual([{ i: "0", s: 'a,"b"\nc', l: ["0", "1"] }, { i: "1", s: null, l: ["1", "2"] }, { i: "2", s: "é ✓", l: ["2", "3"] }, { i: "3", s: "", l: ["3", "4"] }]);
      const { formatResult } = await import("../app/analytics/engine.ts");
      const columns = ["i", "s", "l"];
      for (const format of ["csv", "ndjson", "table"] as const) expect({ format, text: await text(format) }).toEqual({ format, text: formatResult({ columns, rows }, format) });
      expect(await text("json")).toBe(formatResult({ columns, rows }, "json"));
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});

describe("an idle query process", () => {
  /** A server whose query process exits after 1 s idle, that process started by a first query, and a way to ask more. */
  const idleAfterOneSecond = async () => {
    const { startTestServer } = await import("./support/server.ts");
    const { findQueryPool } = await import("../app/analytics/run-query.ts");
    const { join } = await import("node:path");
    const srv = await startTestServer({ query_idle_seconds: 1 });
    const ask = (sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql }), headers: srv.adminHeaders });
    const pool = () => findQueryPool(join(srv.dataDir, "logs"))!;
    try {
      expect(await (await ask("SELECT 1 AS x")).json()).toEqual([{ x: 1 }]);
    } catch (err) {
      await srv.close();
      throw err;
    }
    return { srv, ask, pool, first: pool().processes()[0]! };
  };

  it("that does not exit when asked (stopped here with SIGSTOP) is killed CLOSE_GRACE_MS later, and the next query starts a new one", async () => {
    const { CLOSE_GRACE_MS } = await import("../app/analytics/query-pool.ts");
    const { processAlive } = await import("../app/core/self-process.ts");
    const { srv, ask, pool, first } = await idleAfterOneSecond();
    try {
      process.kill(first.pid, "SIGSTOP"); // it cannot read the closed stdin, nor exit by itself
      const since = Date.now();
      await waitFor(() => !processAlive(first.pid) && pool().processes().length === 0, "the stopped idle process to be killed", 1_000 + CLOSE_GRACE_MS + 10_000);
      expect(Date.now() - since).toBeGreaterThanOrEqual(1_000 + CLOSE_GRACE_MS - 500);
      expect(await (await ask("SELECT 2 AS x")).json()).toEqual([{ x: 2 }]);
      expect(pool().processes()[0]!.pid).not.toBe(first.pid);
    } finally {
      await srv.close();
    }
  });

  it("exits after query_idle_seconds, giving its memory back, and the next query starts a new one", async () => {
    const { srv, ask, pool, first } = await idleAfterOneSecond();
    try {
      expect(first.rss()).toBeGreaterThan(0);
      // Out of memory, the kernel is to kill the query process before the hub.
      const { readFileSync } = await import("node:fs");
      const { CHILD_OOM_SCORE_ADJ } = await import("../app/core/self-process.ts");
      expect(Number(readFileSync(`/proc/${first.pid}/oom_score_adj`, "utf8"))).toBe(CHILD_OOM_SCORE_ADJ);
      expect(Number(readFileSync("/proc/self/oom_score_adj", "utf8"))).toBeLessThan(CHILD_OOM_SCORE_ADJ);
      await first.exited();
      await waitFor(() => pool().processes().length === 0, "the idle process to be gone");
      expect(pool().stats.idleExits).toBe(1);
      expect(first.rss()).toBe(0);
      expect(await (await ask("SELECT 2 AS x")).json()).toEqual([{ x: 2 }]);
      expect(pool().processes()).toHaveLength(1);
      expect(pool().processes()[0]!.pid).not.toBe(first.pid);
    } finally {
      await srv.close();
    }
  });
});

describe("the pipe framing", () => {
  it("cuts a byte stream into the frames sent, with their raw bodies, whatever the chunk sizes", async () => {
    const { encodeFrame, FrameReader } = await import("../app/analytics/frames.ts");
    const frames = [{ a: 1 }, { b: "x".repeat(300_000) }, { c: [1, 2, 3] }, { d: "é€ and a \n newline" }, { e: 1 }, { f: 2 }, { g: 3 }];
    // Bodies sent raw after their frame: text (UTF-8, quotes and newlines as they are), bytes, and empty.
    const raws: (string | Uint8Array | undefined)[] = [undefined, "{\"q\":\"é\\n\"}\n".repeat(50_000), undefined, undefined, new Uint8Array([0, 255, 1, 2]), "", undefined];
    const bytes = Buffer.concat(frames.map((f, i) => encodeFrame(f, raws[i])));
    for (const size of [1, 5, 4096, 65_536, bytes.length]) {
      const got: Record<string, unknown>[] = [];
      const reader = new FrameReader((v) => got.push(v as Record<string, unknown>));
      for (let o = 0; o < bytes.length; o += size) reader.push(bytes.subarray(o, o + size));
      expect(got.map(({ raw, ...rest }) => rest)).toEqual(frames);
      expect(got.map((g) => g.raw === undefined ? undefined : Buffer.from(g.raw as Uint8Array).toString(typeof raws[got.indexOf(g)] === "string" ? "utf8" : "hex"))).toEqual(raws.map((r) => r === undefined ? undefined : typeof r === "string" ? r : Buffer.from(r).toString("hex")));
    }
  });

  it("refuses a frame whose raw body is past the largest frame, or not a whole number of bytes", async () => {
    const { FrameReader, MAX_FRAME_BYTES } = await import("../app/analytics/frames.ts");
    const frame = (rawBytes: unknown) => {
      const json = Buffer.from(JSON.stringify({ type: "result", rawBytes }));
      const header = Buffer.alloc(4);
      header.writeUInt32LE(json.length, 0);
      return Buffer.concat([header, json]);
    };
    expect(() => new FrameReader(() => {}).push(frame(MAX_FRAME_BYTES + 1))).toThrow(/larger than allowed/);
    for (const bad of [1.5, -1, "3", null]) expect(() => new FrameReader(() => {}).push(frame(bad))).toThrow(/must be a whole number of bytes/);
  });

  it("gives a small body after a big one in the same chunk bytes of its own, not a view that keeps the big one", async () => {
    const { encodeFrame, FrameReader } = await import("../app/analytics/frames.ts");
    const bytes = Buffer.concat([encodeFrame({ id: 1 }, "x".repeat(1_000_000)), encodeFrame({ id: 2 }, "small")]);
    const got: { raw: Uint8Array }[] = [];
    const reader = new FrameReader((v) => got.push(v as { raw: Uint8Array }));
    for (let o = 0; o < bytes.length; o += 65_536) reader.push(bytes.subarray(o, o + 65_536));
    expect(got.map((g) => g.raw.byteLength)).toEqual([1_000_000, 5]);
    expect(got[1]!.raw.buffer.byteLength).toBeLessThan(100_000);
  });
});

describe("times on a box whose zone is not UTC", () => {
  it("answers `ts > now() - INTERVAL …` exactly, from the spool and from Parquet, with TZ=Europe/Berlin", async () => {
    const s = await serveWith({ log_segment_seconds: 1, log_compact_seconds: 1 }, { TZ: "Europe/Berlin" });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${s.url}/api/streams/tz/messages`, { method: "POST", body: `m${i}`, headers: s.admin });
        expect(r.status).toBeLessThan(300);
      }
      const recent = "SELECT count(*)::INT AS n, typeof(now()) AS t FROM messages WHERE stream = 'tz' AND ts > now() - INTERVAL 1 MINUTE";
      const older = "SELECT count(*)::INT AS n FROM messages WHERE stream = 'tz' AND ts < now() - INTERVAL 30 MINUTE";
      // Read from the spool first: the zone must not shift a naive UTC ts by an hour.
      expect(await (await s.ask(recent)).json()).toEqual([{ n: 5, t: "TIMESTAMP" }]);
      expect(await (await s.ask(older)).json()).toEqual([{ n: 0 }]);
      // Then from Parquet, once compacted.
      await waitFor(() => {
        const p = Bun.spawnSync(["sh", "-c", `find '${s.dir}/logs' -path '*stream=tz*' -name '*.parquet' | wc -l`]);
        return Number(p.stdout.toString().trim()) > 0;
      }, "the stream to be compacted to Parquet", 30_000);
      expect(await (await s.ask(recent)).json()).toEqual([{ n: 5, t: "TIMESTAMP" }]);
      expect(await (await s.ask(older)).json()).toEqual([{ n: 0 }]);
    } finally {
      await s.stop();
    }
  });
});
