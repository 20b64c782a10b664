import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { appendFileSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { QueryEngine } from "../app/analytics/engine.ts";
import { mayPushDown } from "../app/analytics/pushdown.ts";
import { cacheable } from "../app/analytics/result-cache.ts";
import { silentLogger } from "../app/core/logger.ts";
import { compactSegments } from "../app/log/compaction.ts";
import { encodeRecord } from "../app/log/record.ts";
import { Spool } from "../app/log/spool.ts";
import { tempDir } from "./support/server.ts";

// DuckDB: more than Bun's 5 s default.
setDefaultTimeout(60_000);

const DAY = Date.UTC(2026, 10, 23) * 1000; // µs
const spoolOptions = { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger };

/**
 * A data dir with `compacted` messages in Parquet (3 streams over 2 days) and
 * `waiting` more in the spool (2 of those streams and a new one, a third day),
 * some binary, some with a NULL-ish JSON value.
 */
async function dataDir(compacted: number, waiting: number) {
  const tmp = tempDir();
  const spoolDir = join(tmp.dir, "spool");
  const message = (i: number, streams: string[]) => ({
    stream: streams[i % streams.length]!,
    ts: DAY + Math.floor(i / 7) * 3_600_000_000 + i,
    seq: i,
    origin: "t",
    data: i % 11 === 0 ? new Uint8Array([i & 255, 1]) : i % 5 === 0 ? `{"w":${i}}` : `{"v":${i % 97}}`,
    size: 8,
  });
  if (compacted) {
    const spool = Spool.open(spoolDir, spoolOptions);
    for (let i = 1; i <= compacted; i++) spool.append(message(i, ["spin1", "lab/rig", "Spin2"]));
    spool.close();
    await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(tmp.dir, "logs"));
  }
  const tail = Spool.open(spoolDir, spoolOptions);
  for (let i = compacted + 1; i <= compacted + waiting; i++) tail.append(message(i, ["spin1", "new", "lab/rig"]));
  tail.close();
  return tmp;
}

const open = (dir: string) => QueryEngine.open({ logsDir: join(dir, "logs"), spoolDir: join(dir, "spool"), tempDir: join(dir, "tmp", "duckdb") });

/** The same SQL with the view below a subquery: never pushed down, DuckDB's own answer. */
const reference = (sql: string) => `SELECT * FROM (${sql}) AS r`;

const sorted = (rows: Record<string, unknown>[]) => rows.map((r) => JSON.stringify(r)).sort();

// [SQL, pushed down?, ordered (the rows' order is the SQL's, compared as it is)]
const QUERIES: [string, boolean, boolean][] = [
  ["SELECT stream, count(*) AS n FROM messages GROUP BY 1", true, false],
  ["select STREAM, COUNT(*) from Messages group by Stream order by 1", true, true],
  ["SELECT stream, count(*) AS n, max(seq) AS last, min(ts) AS first, sum(seq) AS total, count(origin) AS o FROM messages GROUP BY stream ORDER BY stream", true, true],
  ["SELECT date, stream, count(seq) FROM messages WHERE ts > TIMESTAMP '2026-11-23 05:00:00' AND kind = 'text' GROUP BY date, stream ORDER BY 1, 2", true, true],
  ["SELECT m.stream AS s, count(*) * 2 + 1 AS x, max(seq) - min(seq) AS span FROM messages m GROUP BY m.stream HAVING count(*) > 3 ORDER BY x DESC, s LIMIT 2", true, true],
  ["SELECT upper(stream) AS s, CASE WHEN count(*) > 40 THEN 'many' ELSE 'few' END AS size, max(seq) BETWEEN 10 AND 500 AS mid FROM messages GROUP BY stream ORDER BY 1", true, true],
  ["SELECT stream, sum((data::JSON->>'v')::INT) AS v, max(data::JSON->>'w') AS w FROM messages WHERE kind = 'text' GROUP BY stream ORDER BY stream", true, true],
  ["SELECT stream, count(*) FROM messages GROUP BY stream ORDER BY count(*) DESC, stream", true, true],
  ["SELECT stream, count(*) AS n FROM messages WHERE ts < now() GROUP BY stream HAVING n > 1 ORDER BY n, stream", true, true],
  ["SELECT stream, date, min(kind) AS k, sum(length(data)) AS bytes FROM messages GROUP BY ALL ORDER BY 1, 2", false, true],
  ["SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY n DESC, stream LIMIT 2 OFFSET 1", true, true],
  ["SELECT stream, sum(seq)::DOUBLE / count(*) AS mean FROM messages GROUP BY stream ORDER BY stream", true, true],
  ["SELECT stream, max(seq) FILTER (WHERE seq % 2 = 0) AS even FROM messages GROUP BY stream ORDER BY stream", false, true],
  ["SELECT stream, avg(seq) AS mean FROM messages GROUP BY stream ORDER BY stream", false, true],
  ["SELECT stream, count(DISTINCT kind) AS kinds FROM messages GROUP BY stream ORDER BY stream", false, true],
  ["SELECT stream, string_agg(stream, ',') AS s FROM messages GROUP BY stream ORDER BY stream", false, true],
  ["SELECT stream, json_group_array(stream) AS a FROM messages WHERE seq < 20 GROUP BY stream ORDER BY stream", false, true],
  ["SELECT stream, list(seq ORDER BY seq)[1] AS first FROM messages GROUP BY stream ORDER BY stream", false, true],
  ["SELECT time_bucket(INTERVAL 1 HOUR, ts) AS t, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1", false, true],
  ["SELECT stream, seq % 3 AS r, count(*) AS n FROM messages GROUP BY stream, seq % 3 ORDER BY 1, 2", false, true],
  ["SELECT DISTINCT stream, count(*) > 0 AS any FROM messages GROUP BY stream ORDER BY 1", false, true],
  ["SELECT date AS stream, count(*) AS n FROM messages GROUP BY date ORDER BY stream", false, true],
  ["SELECT stream, count(*) AS n FROM messages WHERE seq IN (SELECT seq FROM messages WHERE seq < 30) GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) AS n FROM messages, range(2) GROUP BY stream ORDER BY 1", false, true],
  ["WITH m AS (SELECT * FROM messages) SELECT stream, count(*) AS n FROM m GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) AS n, row_number() OVER (ORDER BY stream) AS r FROM messages GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) AS n FROM messages GROUP BY ROLLUP (stream) ORDER BY 1 NULLS LAST", false, true],
  ["SELECT stream, count(*) AS n FROM messages GROUP BY stream QUALIFY row_number() OVER (ORDER BY stream) <= 2 ORDER BY 1", false, true],
  ["SELECT stream, wavg(seq, seq) AS w FROM messages GROUP BY stream ORDER BY 1", false, true],
  // min(x, n) and max(x, n) are the n least or greatest: the greatest of each part's list is not the whole's
  // (spin1 has [300, 297] in the files and [303] in the spool: [303, 300] over the view, [303] combined).
  ["SELECT stream, max(seq, 2) AS top, min(seq, 2) AS bot FROM messages WHERE seq < 304 GROUP BY stream ORDER BY 1", false, true],
  // Integers JSON.parse cannot hold: a BIGINT past 2^53, a HUGEINT, a wide DECIMAL would be written back as others.
  ["SELECT stream, count(*) + 9007199254740993 AS x, 0.30000000000000004441 AS y FROM messages GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) + 123456789012345678901234567890 AS n FROM messages WHERE seq < 123456789012345678.9 GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) AS n FROM messages WHERE seq + 9007199254740000 > 9007199254740250 GROUP BY stream ORDER BY 1", true, true],
  // A DOUBLE sum added up part by part is rounded otherwise (its last bits differ); exact sums, and min or max of a DOUBLE, combine.
  ["SELECT stream, sum(1.0 / seq::DOUBLE) AS s FROM messages GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, sum(seq::DECIMAL(10, 2)) AS d, sum(seq > 100) AS b, max(1.0 / seq::DOUBLE) AS m, count() AS n FROM messages GROUP BY stream ORDER BY 1", true, true],
  // A DOUBLE constant is written back as a DECIMAL one (0.1e0 as 0.1): 300 * 0.1e0 is 30.000000000000004, 300 * 0.1 is 30.0.
  ["SELECT stream, count(*) AS n FROM messages WHERE (seq * 0.1e0)::VARCHAR LIKE '%00000%' GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, max((seq * 0.1e0)::VARCHAR) AS m FROM messages GROUP BY stream ORDER BY 1", false, true],
  ["SELECT stream, count(*) AS n, max(seq * 0.10)::VARCHAR AS m FROM messages WHERE seq > 1.5 AND stream <> 'x' AND origin IS NOT NULL GROUP BY stream ORDER BY 1", true, true],
  // current_query() is the text of the statement run: the rewritten one's names messages_files.
  ["SELECT stream, count(*) AS n FROM messages WHERE current_query() NOT LIKE '%messages' || '_files%' GROUP BY stream ORDER BY 1", false, true],
];

describe("aggregates pushed below the view's union", () => {
  it("tells the shape apart, and every query answers as DuckDB does over the whole view", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const engine = await open(tmp.dir);
      for (const [sql, pushed, ordered] of QUERIES) {
        const before = engine.planStats.pushedDown;
        const got = await engine.query(sql);
        const want = await engine.query(reference(sql));
        expect({ sql, pushed: engine.planStats.pushedDown > before }).toEqual({ sql, pushed });
        expect({ sql, columns: got.columns, types: got.types }).toEqual({ sql, columns: want.columns, types: want.types });
        if (ordered) expect({ sql, rows: got.rows }).toEqual({ sql, rows: want.rows });
        else expect({ sql, rows: sorted(got.rows) }).toEqual({ sql, rows: sorted(want.rows) });
        expect({ sql, empty: want.rows.length === 0 }).toEqual({ sql, empty: false });
      }
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("answers right with nothing waiting in the spool, and with nothing compacted yet", async () => {
    for (const [compacted, waiting] of [[300, 0], [0, 150]] as const) {
      const tmp = await dataDir(compacted, waiting);
      try {
        const engine = await open(tmp.dir);
        const sql = "SELECT stream, count(*) AS n, max(seq) AS last FROM messages GROUP BY stream ORDER BY stream";
        const got = await engine.query(sql);
        expect(engine.planStats.pushedDown).toBe(1);
        expect(got.rows).toEqual((await engine.query(reference(sql))).rows);
        expect(got.rows.reduce((s, r) => s + Number(r.n), 0)).toBe(compacted + waiting);
        engine.close();
      } finally {
        tmp.remove();
      }
    }
  });

  it("keeps counting right as the spool grows under a kept statement, and does not push down with parameters", async () => {
    const tmp = await dataDir(200, 50);
    try {
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      const total = async () => (await engine.query(sql)).rows.reduce((s, r) => s + Number(r.n), 0);
      expect(await total()).toBe(250);
      // The second run reads the settled rows' partial (worked out by the first): its statement is kept.
      expect(await total()).toBe(250);
      expect(engine.planStats.overPartials).toBe(1);
      // More records in the segment the engine already reads (the same table, the same view): the
      // kept statement runs again over them, a stream it has not seen included.
      const spoolDir = join(tmp.dir, "spool");
      const last = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      appendFileSync(last, Buffer.concat(Array.from({ length: 150 }, (_, k) => encodeRecord({ stream: k % 2 ? "spin1" : "more", ts: DAY + 251 + k, seq: 251 + k, origin: "t", data: "x", size: 1 }))));
      const { reused } = engine.planStats;
      expect(await total()).toBe(400);
      expect(engine.planStats.reused).toBe(reused + 1);
      expect((await engine.query(sql)).rows.find((r) => r.stream === "more")).toEqual({ stream: "more", n: "75" });
      const before = engine.planStats.pushedDown;
      const r = await engine.query("SELECT stream, count(*) AS n FROM messages WHERE seq > $1 GROUP BY stream ORDER BY stream", { params: [350] });
      expect(r.rows.reduce((s, row) => s + Number(row.n), 0)).toBe(50);
      expect(engine.planStats.pushedDown).toBe(before);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("runs as written a query naming two columns alike, where ORDER BY a name binds to the one the alias names", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const engine = await open(tmp.dir);
      // The third column is named count_star() by default: the rewritten statement named it so, and its
      // ORDER BY sorted by the count instead of max(seq) (the reference renames it count_star()_1). Names
      // are matched in any case.
      for (const sql of [
        `SELECT stream, max(seq) AS "count_star()", count(*) FROM messages GROUP BY stream ORDER BY "count_star()" DESC`,
        `SELECT stream, max(seq) AS "Count_Star()", count(*) FROM messages GROUP BY stream ORDER BY "count_star()" DESC`,
      ]) {
        const before = engine.planStats.pushedDown;
        const got = await engine.query(sql);
        expect(engine.planStats.pushedDown).toBe(before);
        const want = await engine.query(reference(sql));
        expect(got.rows.map((r) => Object.values(r))).toEqual(want.rows.map((r) => Object.values(r)));
      }
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("binds both parts of one view: a query prepared while a refresh replaces them sees them both old or both new", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { prepare, run } = DuckDBConnection.prototype;
    const tmp = await dataDir(200, 50);
    try {
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      const total = (rows: Record<string, unknown>[]) => rows.reduce((s, r) => s + Number(r.n), 0);
      expect(total((await engine.query(sql)).rows)).toBe(250);
      // A query (A) has its view and prepares its rewrite; meanwhile the spool's segment is compacted and
      // another query's refresh (B) replaces the views: A's prepare runs after the files' part is replaced.
      const pushed = engine.planStats.pushedDown;
      let other: Promise<unknown> | undefined;
      let replaced!: () => void;
      const filesReplaced = new Promise<void>((r) => (replaced = r));
      let prepared!: () => void;
      const aPrepared = new Promise<void>((r) => (prepared = r));
      let armed = true;
      DuckDBConnection.prototype.prepare = async function (this: InstanceType<typeof DuckDBConnection>, text: string) {
        if (!armed || !text.includes("messages_files")) return prepare.call(this, text);
        armed = false;
        const spoolDir = join(tmp.dir, "spool");
        await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(tmp.dir, "logs"));
        other = engine.query("SELECT count(*) AS n FROM messages");
        await Promise.race([filesReplaced, Bun.sleep(5000)]);
        try {
          return await prepare.call(this, text);
        } finally {
          prepared();
        }
      };
      DuckDBConnection.prototype.run = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof run>) {
        const result = await run.apply(this, args);
        if (/^CREATE OR REPLACE VIEW messages_files\b/.test(args[0])) {
          replaced();
          await Promise.race([aPrepared, Bun.sleep(5000)]);
        }
        return result;
      };
      const during = await engine.query(`${sql} LIMIT 10`);
      DuckDBConnection.prototype.prepare = prepare;
      DuckDBConnection.prototype.run = run;
      expect(await other).toEqual(expect.objectContaining({ rows: [{ n: "250" }] }));
      expect(engine.planStats.pushedDown).toBe(pushed + 1);
      expect(total(during.rows)).toBe(250); // 300: the compacted segment's 50 in both parts
      expect(total((await engine.query(sql)).rows)).toBe(250);
      engine.close();
    } finally {
      DuckDBConnection.prototype.prepare = prepare;
      DuckDBConnection.prototype.run = run;
      tmp.remove();
    }
  });

  it("stops a query interrupted while its rewrite is worked out, rather than run the original unbounded", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { runAndReadAll, prepare } = DuckDBConnection.prototype;
    const tmp = await dataDir(200, 50);
    try {
      const engine = await open(tmp.dir);
      let cancel = () => {};
      // The cancel (or the time limit) comes while DuckDB parses the query for the pushdown: that statement
      // fails as DuckDB fails an interrupted one, and the interrupt is spent (DuckDB clears it at the next).
      DuckDBConnection.prototype.runAndReadAll = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof runAndReadAll>) {
        if (!String(args[0]).includes("json_serialize_sql")) return runAndReadAll.apply(this, args);
        cancel();
        throw new Error("INTERRUPT Error: Interrupted!");
      };
      const sql = "SELECT stream, count(*) AS n FROM messages WHERE seq > 0 GROUP BY stream ORDER BY stream";
      await expect(engine.query(sql, { onInterrupt: (f) => (cancel = f) })).rejects.toThrow(/cancelled/);
      DuckDBConnection.prototype.runAndReadAll = runAndReadAll;
      // Not remembered as a query that cannot be pushed down.
      const before = engine.planStats.pushedDown;
      expect((await engine.query(sql)).rows.reduce((s, r) => s + Number(r.n), 0)).toBe(250);
      expect(engine.planStats.pushedDown).toBe(before + 1);
      // The same while the remembered rewrite is prepared (now(): the statement is not kept, the rewrite is).
      const again = "SELECT stream, count(*) AS n FROM messages WHERE ts < now() GROUP BY stream ORDER BY stream";
      await engine.query(again);
      DuckDBConnection.prototype.prepare = async function (this: InstanceType<typeof DuckDBConnection>, text: string) {
        if (!text.includes("messages_files")) return prepare.call(this, text);
        cancel();
        throw new Error("INTERRUPT Error: Interrupted!");
      };
      await expect(engine.query(again, { onInterrupt: (f) => (cancel = f) })).rejects.toThrow(/cancelled/);
      DuckDBConnection.prototype.prepare = prepare;
      expect((await engine.query(again)).rows.reduce((s, r) => s + Number(r.n), 0)).toBe(250);
      expect(engine.planStats.pushedDown).toBe(before + 3);
      engine.close();
    } finally {
      DuckDBConnection.prototype.runAndReadAll = runAndReadAll;
      DuckDBConnection.prototype.prepare = prepare;
      tmp.remove();
    }
  });

  it("gives the original's error, in the client's SQL, when the rewrite fails as it runs", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const engine = await open(tmp.dir);
      // max(seq) is 299 at most in the files, 420 in the view: both out of a TINYINT's range.
      for (const sql of ["SELECT stream, max(seq)::TINYINT AS m FROM messages GROUP BY stream ORDER BY 1", "SELECT stream, sum(seq)::TINYINT AS s FROM messages WHERE ts < now() GROUP BY stream"]) {
        const before = engine.planStats.pushedDown;
        // (The second reuses the first's statement where it is kept: the rewrite still.)
        for (const run of [() => engine.query(sql), () => engine.streamRows(sql, { rowLimit: 100, timeoutMs: 30_000 }, () => {})]) {
          const err = await run().then(() => null, (e: Error) => e);
          expect(engine.planStats.pushedDown).toBeGreaterThan(before);
          expect(err?.message).toMatch(/^Conversion Error: .*out of range.*(max|sum)\(seq\)/s);
          expect(err?.message).not.toMatch(/__a|__g|messages_files|messages_spool/);
        }
      }
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("asks the parser only for SQL that may have the shape", () => {
    expect(mayPushDown("SELECT stream, count(*) FROM messages GROUP BY 1")).toBe(true);
    expect(mayPushDown("SELECT * FROM messages WHERE seq = 3")).toBe(false);
    expect(mayPushDown("SELECT 1 GROUP BY 1")).toBe(false);
    // Not a long text (a long IN list): its rewrite is kept in memory, and working it out costs more than it saves.
    const list = Array.from({ length: 50_000 }, (_, i) => i).join(", ");
    expect(mayPushDown(`SELECT stream, count(*) FROM messages WHERE seq IN (${list}) GROUP BY 1`)).toBe(false);
    expect(mayPushDown(`SELECT stream, count(*) FROM messages WHERE seq IN (${list.slice(0, 10_000)}) GROUP BY 1`)).toBe(true);
  });
});

/** Records for the spool, `count` of them from seq `from`, over `streams`. */
const records = (from: number, count: number, streams: string[]) =>
  Buffer.concat(Array.from({ length: count }, (_, k) => encodeRecord({ stream: streams[k % streams.length]!, ts: DAY + 86_400_000_000 * 3 + from + k, seq: from + k, origin: "t", data: `{"v":${k}}`, size: 8 })));

/** A new spool segment (the one being written from now on, the one before it sealed), holding `count` records. */
function newSegment(spoolDir: string, from: number, count: number, streams: string[]): string {
  Spool.open(spoolDir, spoolOptions).close();
  const path = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
  appendFileSync(path, records(from, count, streams));
  return path;
}

const total = (rows: Record<string, unknown>[]) => rows.reduce((s, r) => s + Number(r.n), 0);

describe("partials: the settled rows' aggregate kept while the segment being written grows", () => {
  it("answers every pushed-down query from a partial as DuckDB does over the whole view, before and after the segment grows", async () => {
    // 300 in Parquet, 120 in a sealed segment, 30 in the segment being written.
    const tmp = await dataDir(300, 120);
    try {
      const spoolDir = join(tmp.dir, "spool");
      const growing = newSegment(spoolDir, 1000, 30, ["spin1", "late"]);
      const engine = await open(tmp.dir);
      const cases = QUERIES.filter(([sql, pushed]) => pushed && cacheable(sql));
      expect(cases.length).toBeGreaterThan(8);
      const check = async () => {
        for (const [sql, , ordered] of cases) {
          await engine.query(sql); // the first run of a text works its plan out
          const { overPartials } = engine.planStats;
          const got = await engine.query(sql);
          expect({ sql, over: engine.planStats.overPartials }).toEqual({ sql, over: overPartials + 1 });
          const want = await engine.query(reference(sql));
          expect({ sql, columns: got.columns, types: got.types }).toEqual({ sql, columns: want.columns, types: want.types });
          if (ordered) expect({ sql, rows: got.rows }).toEqual({ sql, rows: want.rows });
          else expect({ sql, rows: sorted(got.rows) }).toEqual({ sql, rows: sorted(want.rows) });
        }
      };
      await check();
      const computed = engine.planStats.partialsComputed;
      expect(computed).toBe(cases.length);
      // The segment being written grows: the same partials, the new rows read from its table.
      appendFileSync(growing, records(1030, 45, ["late", "newer"]));
      await check();
      expect(engine.planStats.partialsComputed).toBe(computed);
      const count = await engine.query("SELECT stream, count(*) AS n FROM messages GROUP BY stream");
      expect(total(count.rows)).toBe(300 + 120 + 30 + 45);
      expect(count.rows.find((r) => r.stream === "newer")).toEqual({ stream: "newer", n: "22" });
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("works a partial out again when a segment is compacted or a new one starts, counting each message once", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const spoolDir = join(tmp.dir, "spool");
      const sealed = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      const second = newSegment(spoolDir, 1000, 30, ["spin1"]);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      const count = async () => total((await engine.query(sql)).rows);
      expect(await count()).toBe(450);
      expect(await count()).toBe(450);
      expect(engine.planStats.partialsComputed).toBe(1);
      // The sealed segment compacted: its rows move from its table to Parquet, both settled.
      await compactSegments([sealed], join(tmp.dir, "logs"));
      expect(await count()).toBe(450);
      expect(engine.planStats.partialsComputed).toBe(2);
      // A new segment starts: the one before is sealed, its rows move from growing to settled.
      newSegment(spoolDir, 2000, 20, ["spin1", "third"]);
      appendFileSync(second, Buffer.alloc(0));
      expect(await count()).toBe(470);
      expect(engine.planStats.partialsComputed).toBe(3);
      expect(await count()).toBe(470);
      expect(engine.planStats.partialsComputed).toBe(3);
      expect((await engine.query(sql)).rows).toEqual((await engine.query(reference(sql))).rows);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("does not use a partial of another view than the one its run bound: the view changed as the partial was worked out, or before the run (whole and streamed answers)", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { start, prepare } = DuckDBConnection.prototype;
    const cases = (["as the partial is worked out", "before the run binds its view"] as const).flatMap((when) => (["whole", "streamed"] as const).map((answer) => ({ when, answer })));
    for (const { when, answer } of cases) {
      const tmp = await dataDir(300, 120);
      try {
        const spoolDir = join(tmp.dir, "spool");
        newSegment(spoolDir, 1000, 30, ["spin1", "late"]);
        const engine = await open(tmp.dir);
        const sql = "SELECT stream, count(*) AS n, max(seq) AS last FROM messages GROUP BY stream ORDER BY stream";
        // The first run works the plan out; the next works the partial out, then prepares the statement over it.
        expect(total((await engine.query(sql)).rows)).toBe(450);
        // Meanwhile a new segment starts and another query's refresh replaces the view: the segment that
        // was growing is settled now, and a run reading the old partial beside the new growing part
        // would miss its 30 messages.
        let armed = true;
        const changeView = async () => {
          armed = false;
          newSegment(spoolDir, 2000, 20, ["spin1", "third"]);
          expect((await engine.query("SELECT count(*) AS n FROM messages")).rows).toEqual([{ n: "470" }]);
        };
        DuckDBConnection.prototype.start = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof start>) {
          const pending = await start.apply(this, args);
          if (armed && when === "as the partial is worked out" && args[0].startsWith("CREATE TABLE __partial_")) await changeView();
          return pending;
        };
        DuckDBConnection.prototype.prepare = async function (this: InstanceType<typeof DuckDBConnection>, text: string) {
          if (armed && when === "before the run binds its view" && text.includes("__partial_")) await changeView();
          return prepare.call(this, text);
        };
        const stale = engine.planStats.partialsStale;
        const during: Record<string, unknown>[] = [];
        if (answer === "whole") during.push(...(await engine.query(sql)).rows);
        else await engine.streamRows(sql, { rowLimit: 1000, timeoutMs: 10_000 }, (_columns, rows) => { during.push(...rows); });
        DuckDBConnection.prototype.start = start;
        DuckDBConnection.prototype.prepare = prepare;
        expect({ when, answer, armed }).toEqual({ when, answer, armed: false });
        expect({ when, answer, total: total(during) }).toEqual({ when, answer, total: 470 });
        expect(during).toEqual((await engine.query(reference(sql))).rows);
        expect({ when, answer, stale: engine.planStats.partialsStale }).toEqual({ when, answer, stale: stale + 1 });
        // And the next run works out a partial of the view as it is now.
        const computed = engine.planStats.partialsComputed;
        expect(total((await engine.query(sql)).rows)).toBe(470);
        expect(engine.planStats.partialsComputed).toBe(computed + 1);
        engine.close();
      } finally {
        DuckDBConnection.prototype.start = start;
        DuckDBConnection.prototype.prepare = prepare;
        tmp.remove();
      }
    }
  });

  it("keeps no partial for a query whose answer depends on the time, nor with parameters", async () => {
    const tmp = await dataDir(300, 120);
    try {
      newSegment(join(tmp.dir, "spool"), 1000, 30, ["spin1"]);
      const engine = await open(tmp.dir);
      for (let i = 0; i < 3; i++) {
        expect(total((await engine.query("SELECT stream, count(*) AS n FROM messages WHERE ts < now() GROUP BY stream")).rows)).toBe(450);
        expect(total((await engine.query("SELECT stream, count(*) AS n FROM messages WHERE seq > $1 GROUP BY stream", { params: [0] })).rows)).toBe(450);
      }
      expect(engine.planStats.partialsComputed).toBe(0);
      expect(engine.planStats.overPartials).toBe(0);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("counts the rows of a segment taken for sealed that grows on (the spool made the next file and gave it up: a failed roll)", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const spoolDir = join(tmp.dir, "spool");
      const current = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      expect(total((await engine.query(sql)).rows)).toBe(420);
      expect(total((await engine.query(sql)).rows)).toBe(420);
      // Spool.startSegment: openSync(next, "a") then the marks write fails (disk full): the file is unlinked,
      // the roll fails and the spool writes on in the current segment. A refresh lists the next file meanwhile.
      const name = Spool.segments(spoolDir).at(-1)!;
      const next = join(spoolDir, String(Number(name.replace(/\D/g, "")) + 1).padStart(16, "0") + ".wal");
      writeFileSync(next, "");
      expect(total((await engine.query(sql)).rows)).toBe(420);
      unlinkSync(next);
      appendFileSync(current, records(5000, 50, ["spin1", "later"]));
      const got = await engine.query(sql);
      const want = await engine.query(reference(sql));
      expect(got.rows).toEqual(want.rows);
      expect(total(got.rows)).toBe(470);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("leaves no partial table behind when two runs of one SQL work its partial out at once", async () => {
    const tmp = await dataDir(300, 120);
    try {
      const spoolDir = join(tmp.dir, "spool");
      newSegment(spoolDir, 1000, 30, ["spin1", "late"]);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      expect(total((await engine.query(sql)).rows)).toBe(450); // works the plan out
      const admin = (engine as any).admin;
      const partialTables = async () => (await admin.runAndReadAll("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__partial_%' ORDER BY 1")).getRows().map((r: unknown[]) => String(r[0]));
      for (let round = 0; round < 3; round++) {
        const [a, b] = await Promise.all([engine.query(sql), engine.query(sql)]);
        expect(total(a.rows)).toBe(450 + round * 10);
        expect(total(b.rows)).toBe(450 + round * 10);
        // the view changes: every partial is worked out again, the old ones dropped
        newSegment(spoolDir, 3000 + round * 10, 10, ["spin1"]);
      }
      await engine.query("SELECT 1"); // a refresh with no query running drops what toDrop holds
      await engine.query("SELECT 1");
      const kept = (engine as any).partials as Map<string, { table: string }>;
      expect(await partialTables()).toEqual([...kept.values()].map((k) => k.table).sort());
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("stops a query cancelled as its partial is worked out; the next runs, and no partial table is left", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { start } = DuckDBConnection.prototype;
    const tmp = await dataDir(300, 120);
    try {
      newSegment(join(tmp.dir, "spool"), 1000, 30, ["spin1"]);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream";
      expect(total((await engine.query(sql)).rows)).toBe(450);
      let cancel: (() => void) | null = null;
      DuckDBConnection.prototype.start = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof start>) {
        if (cancel && args[0].startsWith("CREATE TABLE __partial_")) { cancel(); cancel = null; }
        return start.apply(this, args);
      };
      let err: unknown = null;
      try {
        await engine.query(sql, { onInterrupt: (i) => { cancel = i; } });
      } catch (e) { err = e; }
      DuckDBConnection.prototype.start = start;
      expect(String(err)).toContain("cancelled");
      expect(total((await engine.query(sql)).rows)).toBe(450);
      await engine.query("SELECT 1");
      const admin = (engine as any).admin;
      const tables = (await admin.runAndReadAll("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__partial_%'")).getRows().length;
      expect(tables).toBe((engine as any).partials.size);
      engine.close();
    } finally {
      DuckDBConnection.prototype.start = start;
      tmp.remove();
    }
  });

  it("stops a query whose time limit passes as its partial is worked out", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { start } = DuckDBConnection.prototype;
    const tmp = await dataDir(300, 120);
    try {
      newSegment(join(tmp.dir, "spool"), 1000, 30, ["spin1"]);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream";
      expect(total((await engine.query(sql)).rows)).toBe(450);
      DuckDBConnection.prototype.start = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof start>) {
        if (args[0].startsWith("CREATE TABLE __partial_")) await Bun.sleep(400);
        return start.apply(this, args);
      };
      let err: unknown = null;
      try { await engine.query(sql, { timeoutMs: 200 }); } catch (e) { err = e; }
      DuckDBConnection.prototype.start = start;
      expect(String(err)).toMatch(/took|time|long/i);
      expect(total((await engine.query(sql)).rows)).toBe(450);
      engine.close();
    } finally {
      DuckDBConnection.prototype.start = start;
      tmp.remove();
    }
  });

  it("does not keep a partial worked out while a settled segment is read again from its start", async () => {
    const { DuckDBConnection } = await import("@duckdb/node-api");
    const { run } = DuckDBConnection.prototype;
    const tmp = await dataDir(300, 120);
    try {
      const spoolDir = join(tmp.dir, "spool");
      const sealed = join(spoolDir, Spool.segments(spoolDir).at(-1)!);
      newSegment(spoolDir, 1000, 30, ["spin1", "late"]);
      const engine = await open(tmp.dir);
      const sql = "SELECT stream, count(*) AS n FROM messages GROUP BY stream ORDER BY stream";
      expect(total((await engine.query(sql)).rows)).toBe(450);
      expect(total((await engine.query(sql)).rows)).toBe(450);
      const e = engine as any;
      expect(e.tail.get(sealed).complete).toBe(true);
      // The sealed segment is cut back by its last record (size < offset): it is read again from the start.
      truncateSync(sealed, e.tail.get(sealed).lastStart);
      let armed = true;
      DuckDBConnection.prototype.run = async function (this: InstanceType<typeof DuckDBConnection>, ...args: Parameters<typeof run>) {
        const out = await run.apply(this, args);
        if (armed && String(args[0]).startsWith("CREATE OR REPLACE TABLE") && String(args[0]).includes("tail")) {
          armed = false;
          // Another query, its refresh just done, works its partial out now (as the table is read again).
          const conn = await e.db.connect();
          await e.partialFor(conn, sql);
          conn.closeSync();
        }
        return out;
      };
      const during = await engine.query("SELECT count(*) AS n FROM messages");
      DuckDBConnection.prototype.run = run;
      expect(armed).toBe(false);
      expect(during.rows).toEqual([{ n: "449" }]);
      const got = await engine.query(sql);
      const want = await engine.query(reference(sql));
      expect(got.rows).toEqual(want.rows);
      engine.close();
    } finally {
      DuckDBConnection.prototype.run = run;
      tmp.remove();
    }
  });
});
