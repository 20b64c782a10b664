import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { appendFileSync, mkdirSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { compactSegments } from "../app/log/compaction.ts";
import { markLogChanged } from "../app/log/partitions.ts";
import { Spool } from "../app/log/spool.ts";
import { pageSql } from "../app/sinks/history.ts";
import { DAY, plainDuckDB, quietSpool, record, records, spoolOptions } from "./support/quiet-spool.ts";
import { startTestServer } from "./support/server.ts";

// DuckDB and a query process: more than Bun's 5 s default.
setDefaultTimeout(60_000);

const duckdb = plainDuckDB();
const { streamsOf } = duckdb;

describe("the streams a query reads", () => {
  it("takes the streams every read of the view is pinned to, by constants or parameters", async () => {
    const cases: [string, unknown[] | undefined, string[]][] = [
      ["SELECT * FROM messages WHERE stream = 'spin7' AND seq = 250000", undefined, ["spin7"]],
      ["select count(*) from Messages M where seq > 1 and 'x' = M.STREAM", undefined, ["x"]],
      ["SELECT * FROM messages WHERE (seq > 1 AND (stream IN ('a', 'b/c') AND kind = 'text'))", undefined, ["a", "b/c"]],
      ["FROM messages WHERE stream = 'it''s' ORDER BY ts DESC LIMIT 10", undefined, ["it's"]],
      ["SELECT * FROM messages WHERE stream = $1 AND ts > make_timestamp($2::BIGINT)", ["lab/rig", 5], ["lab/rig"]],
      ["SELECT * FROM messages WHERE seq > ? AND stream = ?", [3, "q"], ["q"]],
      ["SELECT * FROM messages WHERE stream IN ($1, 'lit')", ["p"], ["lit", "p"]],
      // The history's page (a CTE, a window, scalar subqueries), with its own parameters.
      [pageSql("stream = $1 AND seq > $2::BIGINT", 100, 4096), ["s", 7], ["s"]],
      ["WITH l AS (SELECT seq FROM messages WHERE stream = 'a') SELECT count(*) FROM l", undefined, ["a"]],
      ["WITH l AS (SELECT seq FROM messages WHERE stream = 'a') SELECT (SELECT count(*) FROM l) AS n, seq FROM messages WHERE stream = 'b'", undefined, ["a", "b"]],
      ["WITH a AS (SELECT * FROM messages WHERE stream = 'x'), b AS (SELECT * FROM a) SELECT * FROM b", undefined, ["x"]],
      ["SELECT seq FROM messages WHERE stream = 'a' UNION ALL SELECT seq FROM messages WHERE stream = 'b'", undefined, ["a", "b"]],
      ["SELECT (SELECT max(seq) FROM messages WHERE stream = 'b'), seq FROM messages WHERE stream = 'a'", undefined, ["a", "b"]],
      ["SELECT * FROM (SELECT * FROM messages WHERE stream = 'a') AS s WHERE seq > 2", undefined, ["a"]],
      // The WHERE binds stream to the view's column, not to the select list's alias of that name.
      ["SELECT data AS stream FROM messages WHERE stream = 'a'", undefined, ["a"]],
    ];
    for (const [sql, params, want] of cases) expect({ sql, streams: await streamsOf(sql, params) }).toEqual({ sql, streams: want });
  });

  it("has no scope when some read of the view may take rows of other streams, or reads anything else", async () => {
    const cases: [string, unknown[]?][] = [
      ["SELECT * FROM messages"],
      ["SELECT * FROM messages WHERE seq = 3"],
      ["SELECT * FROM messages WHERE stream = 'a' OR seq = 3"],
      ["SELECT * FROM messages WHERE NOT stream = 'a'"],
      ["SELECT * FROM messages WHERE stream <> 'a'"],
      ["SELECT * FROM messages WHERE stream LIKE 'a%'"],
      ["SELECT * FROM messages WHERE lower(stream) = 'a'"],
      ["SELECT * FROM messages WHERE stream = 'A' COLLATE nocase"],
      ["SELECT * FROM messages WHERE stream::VARCHAR = 'a'"],
      ["SELECT * FROM messages WHERE stream = NULL"],
      ["SELECT * FROM messages WHERE stream = 5"],
      ["SELECT * FROM messages WHERE stream = (SELECT 'a')"],
      ["SELECT * FROM messages WHERE stream IN (SELECT 'a')"],
      ["SELECT * FROM messages WHERE stream IN ('a', lower('B'))"],
      ["SELECT * FROM messages m WHERE x.stream = 'a'"],
      // A parameter that is not a string, or not given.
      ["SELECT * FROM messages WHERE stream = $1", [5]],
      ["SELECT * FROM messages WHERE stream = $1", []],
      ["SELECT * FROM messages WHERE stream = $1"],
      // Another read of the view, unpinned: a subquery, a CTE, the other side of a union, a join.
      ["SELECT * FROM messages WHERE stream = 'a' AND seq IN (SELECT seq FROM messages)"],
      ["WITH m AS (SELECT * FROM messages) SELECT * FROM m WHERE stream = 'a'"],
      ["WITH messages AS (SELECT * FROM messages) SELECT * FROM messages WHERE stream = 'a'"],
      // A CTE is a CTE only within its query: before it in the same WITH, or outside, the name is a table's.
      ["WITH a AS (SELECT * FROM b), b AS (SELECT * FROM messages WHERE stream = 'x') SELECT * FROM a"],
      ["SELECT (SELECT count(*) FROM l) AS n, (WITH l AS (SELECT 1) SELECT 1) AS z FROM messages WHERE stream = 'a'"],
      // Sampled before the WHERE, or with its columns renamed: the WHERE does not pin what is read.
      ["SELECT * FROM messages TABLESAMPLE 10 ROWS WHERE stream = 'a'"],
      ["SELECT * FROM messages WHERE stream = 'a' USING SAMPLE 10%"],
      ["SELECT * FROM messages AS m(a, b, c, stream) WHERE stream = 'a'"],
      ["SELECT seq FROM messages WHERE stream = 'a' UNION ALL SELECT seq FROM messages"],
      ["SELECT * FROM messages a JOIN messages b USING (seq) WHERE a.stream = 'x' AND b.stream = 'x'"],
      ["SELECT * FROM messages, range(2) WHERE stream = 'a'"],
      // Other tables and table functions: what the spool's read changes, the scope cannot see.
      ["SELECT * FROM messages_spool WHERE stream = 'a'"],
      ["SELECT * FROM memory.main.messages WHERE stream = 'a'"],
      ["SELECT * FROM tail_db.main.tail_1 WHERE stream = 'a'"],
      ["SELECT * FROM query_table('messages') WHERE stream = 'a'"],
      ["SELECT * FROM read_parquet('logs/**/*.parquet') WHERE stream = 'a'"],
      ["SELECT 1"],
      ["SELECT * FROM messages WHERE stream = 'a'; SELECT 1"],
      ["not sql at all"],
    ];
    for (const [sql, params] of cases) expect({ sql, streams: await streamsOf(sql, params) }).toEqual({ sql, streams: null });
  });
});

describe("a query whose streams have nothing unread skips the spool's read", () => {
  it("answers from the view as it is while other streams' records wait, and reads them once its own stream has one", async () => {
    const { tmp, segment, engine, count } = await quietSpool();
    try {
      expect(await count("quiet")).toBe(50);
      appendFileSync(segment, records("busy", 1000, 3000));
      const skipped = engine.planStats.refreshesSkipped;
      expect(await count("quiet")).toBe(50);
      expect(engine.planStats.refreshesSkipped).toBe(skipped + 1);
      // The same through parameters, and the data version the answer cache keys by: not moved.
      const version = await engine.dataVersion({ sql: "SELECT count(*) AS n FROM messages WHERE stream = $1", params: ["quiet"] });
      expect((await engine.query("SELECT count(*)::INT AS n FROM messages WHERE stream = $1", { params: ["quiet"] })).rows).toEqual([{ n: 50 }]);
      expect(engine.planStats.refreshesSkipped).toBe(skipped + 3);
      // One record of quiet among more of busy: read, with everything before it.
      appendFileSync(segment, Buffer.concat([records("busy", 5000, 500), record("quiet", 6000), records("busy", 6001, 500)]));
      expect(await count("quiet")).toBe(51);
      expect(engine.planStats.refreshesSkipped).toBe(skipped + 3);
      expect(await engine.dataVersion({ sql: "SELECT count(*) AS n FROM messages WHERE stream = $1", params: ["quiet"] })).not.toBe(version);
      // The busy stream's own query reads them all; a query of every stream too.
      expect(await count("busy")).toBe(4000);
      expect(Number((await engine.query("SELECT count(*) AS n FROM messages")).rows[0]!.n)).toBe(4101);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("refreshes when the log changed otherwise: a new segment, compaction, a merged file, a cut-back write, a damaged record, a follow that read on", async () => {
    const { tmp, spoolDir, segment, engine, count } = await quietSpool();
    try {
      expect(await count("quiet")).toBe(50);
      const skipped = () => engine.planStats.refreshesSkipped;
      // A new segment (busy records only): the sealed one moves to the settled part, a new table comes.
      Spool.open(spoolDir, spoolOptions).close();
      const second = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      appendFileSync(second, records("busy", 1000, 200));
      let before = skipped();
      expect(await count("quiet")).toBe(50);
      expect(skipped()).toBe(before);
      expect(await count("busy")).toBe(200);
      // Compaction of the first segment: its rows move to Parquet, counted once.
      await compactSegments([segment], join(tmp.dir, "logs"));
      before = skipped();
      expect(await count("quiet")).toBe(50);
      expect(skipped()).toBe(before);
      expect(Number((await engine.query("SELECT count(*) AS n FROM messages")).rows[0]!.n)).toBe(300);
      expect(await count("quiet")).toBe(50);
      expect(skipped()).toBe(before + 1);
      // A Parquet file of quiet put in place as a merge does (which marks the folder changed): the folder
      // is listed again, whatever the spool holds.
      const folder = join(tmp.dir, "logs", "stream=quiet", "date=2026-11-23");
      mkdirSync(folder, { recursive: true });
      await duckdb.run(`COPY (SELECT make_timestamp(${DAY} + i) AS ts, 90000 + i AS seq, 't' AS origin, 'text' AS kind, 'x' AS data FROM range(5) t(i)) TO '${join(folder, "merged_0.parquet")}' (FORMAT parquet)`);
      markLogChanged(join(tmp.dir, "logs"));
      before = skipped();
      expect(await count("quiet")).toBe(55);
      expect(skipped()).toBe(before);
      // A write cut back (a failed one on a full disk), then written on: the table is read again.
      appendFileSync(second, record("quiet", 2000));
      expect(await count("quiet")).toBe(56);
      // Cut at the record's start and written on with records of the same lengths: what follows the old
      // offset reads as whole records, none of quiet, yet the quiet one read before is gone.
      truncateSync(second, Bun.file(second).size - record("quiet", 2000).length);
      appendFileSync(second, Buffer.concat([record("other", 2000), records("busy", 3000, 3)]));
      before = skipped();
      expect(await count("quiet")).toBe(55);
      expect(skipped()).toBe(before);
      expect(await count("busy")).toBe(203);
      // A damaged record among the unread: left to the refresh, which reads what it can.
      const damaged = record("busy", 4000);
      damaged[damaged.length - 1] = damaged[damaged.length - 1]! ^ 0xff;
      appendFileSync(second, Buffer.concat([records("busy", 3900, 5), damaged]));
      before = skipped();
      expect(await count("quiet")).toBe(55);
      expect(skipped()).toBe(before);
      // A follow reads a new segment, a record of quiet in it, before any query: its table is not in the
      // view yet, so the view is made anew (nothing is unread, yet skipping would miss the record).
      Spool.open(spoolDir, spoolOptions).close();
      appendFileSync(join(spoolDir, Spool.segments(spoolDir).at(-1)!), record("quiet", 5000));
      expect(await engine.followTail()).toBeGreaterThan(0);
      before = skipped();
      expect(await count("quiet")).toBe(56);
      expect(skipped()).toBe(before);
      expect(await count("quiet")).toBe(56);
      expect(skipped()).toBe(before + 1);
      // A new segment with no message yet (its table left out of the view), then a record of quiet a
      // follow reads: the view is made anew with its table.
      Spool.open(spoolDir, spoolOptions).close();
      expect(await count("quiet")).toBe(56);
      appendFileSync(join(spoolDir, Spool.segments(spoolDir).at(-1)!), record("quiet", 6000));
      expect(await engine.followTail()).toBe(1);
      expect(await count("quiet")).toBe(57);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("counts every acknowledged message of the queried stream once, whatever comes between: follows, new segments, compaction", async () => {
    const { tmp, spoolDir, engine, count } = await quietSpool();
    try {
      const want = new Map([["quiet", 50], ["other", 50], ["busy", 0]]);
      let seq = 10_000;
      let segment = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      let rand = 42;
      const next = (n: number) => {
        rand = (rand * 1103515245 + 12345) % 2 ** 31;
        return rand % n;
      };
      for (let step = 0; step < 120; step++) {
        const what = next(20);
        if (what < 12) {
          const n = 1 + next(400);
          appendFileSync(segment, records("busy", seq, n));
          seq += n;
          want.set("busy", want.get("busy")! + n);
        } else if (what < 15) {
          const stream = what === 12 ? "quiet" : "other";
          appendFileSync(segment, record(stream, seq++));
          want.set(stream, want.get(stream)! + 1);
        } else if (what < 17) {
          void engine.followTail(); // a follow reading as the next query comes
        } else if (what === 17) {
          Spool.open(spoolDir, spoolOptions).close();
          segment = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
        } else {
          const sealed = Spool.segments(spoolDir).slice(0, -1).map((f) => join(spoolDir, f));
          if (sealed.length) await compactSegments(sealed, join(tmp.dir, "logs"));
        }
        const stream = ["quiet", "other", "busy"][next(3)]!;
        expect({ step, stream, n: await count(stream) }).toEqual({ step, stream, n: want.get(stream)! });
        // Grouped by stream: pushed below the union, over a partial of the settled rows.
        const grouped = await engine.query(`SELECT stream, count(*) AS n FROM messages WHERE stream = '${stream}' GROUP BY stream`);
        expect({ step, stream, grouped: Number(grouped.rows[0]?.n ?? 0) }).toEqual({ step, stream, grouped: want.get(stream)! });
      }
      expect(engine.planStats.refreshesSkipped).toBeGreaterThan(10);
      expect(engine.planStats.overPartials).toBeGreaterThan(10);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("is not taken for a streamed answer, which lists the Parquet folder afresh", async () => {
    const { tmp, segment, engine } = await quietSpool();
    try {
      await engine.query("SELECT count(*) FROM messages WHERE stream = 'quiet'");
      appendFileSync(segment, records("busy", 1000, 100));
      const before = engine.planStats.refreshesSkipped;
      let rows = 0;
      await engine.streamRows("SELECT seq FROM messages WHERE stream = 'quiet'", { rowLimit: 1000, timeoutMs: 10_000 }, (_c, r) => {
        rows += r.length;
      });
      expect(rows).toBe(50);
      expect(engine.planStats.refreshesSkipped).toBe(before);
      engine.close();
    } finally {
      tmp.remove();
    }
  });
});

describe("through POST /api/query, with the answer cache", () => {
  it("answers a quiet stream's query with every message acknowledged while another stream is busy", async () => {
    const srv = await startTestServer({ query_timeout_seconds: 20 });
    try {
      const post = async (stream: string, body: string, type = "text/plain") =>
        expect((await fetch(`${srv.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { ...srv.adminHeaders, "content-type": type } })).status).toBeLessThan(300);
      const ask = async (sql: string) => {
        const r = await fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format: "json" }) });
        expect(r.status).toBe(200);
        return ((await r.json()) as { n: number }[])[0]!.n;
      };
      let busy = 0;
      for (let i = 1; i <= 15; i++) {
        await post("busy", Array.from({ length: 300 }, (_, k) => `{"k":${k}}`).join("\n") + "\n", "application/x-ndjson");
        busy += 300;
        await post("quiet", `q${i}`);
        expect(await ask("SELECT count(*)::INT AS n FROM messages WHERE stream = 'quiet'")).toBe(i);
        await post("busy", "one more");
        busy++;
        // Twice: the second may be the cached answer, and must still be right.
        expect(await ask("SELECT count(*)::INT AS n FROM messages WHERE stream = 'quiet'")).toBe(i);
        expect(await ask("SELECT count(*)::INT AS n FROM messages WHERE stream = 'quiet'")).toBe(i);
      }
      expect(await ask("SELECT count(*)::INT AS n FROM messages WHERE stream = 'busy'")).toBe(busy);
    } finally {
      await srv.close();
    }
  });
});

describe("a closed engine", () => {
  it("refuses a query with the same clear error whether or not it could have skipped the read", async () => {
    const { tmp, engine } = await quietSpool();
    try {
      await engine.query("SELECT count(*) FROM messages WHERE stream = 'quiet'");
      engine.close();
      for (const sql of ["SELECT count(*) FROM messages WHERE stream = 'quiet'", "SELECT count(*) FROM messages"]) {
        const err = await engine.query(sql).then(() => null, (e: Error) => e);
        expect({ sql, name: err?.name, message: err?.message }).toEqual({ sql, name: "QueryError", message: "reading the log failed: the query engine is closed" });
      }
    } finally {
      tmp.remove();
    }
  });
});
