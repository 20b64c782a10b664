import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../app/core/logger.ts";
import { compactSegments } from "../app/log/compaction.ts";
import { Spool } from "../app/log/spool.ts";
import { cli } from "./support/cli.ts";
import { startFakeSlack } from "./support/fake-slack.ts";
import { offsetClock, startTestServer, tempDir, waitFor } from "./support/server.ts";

// DuckDB, child processes and real servers.
setDefaultTimeout(120_000);

const DAY_US = 86_400_000_000;
const today = () => new Date().toISOString().slice(0, 10);

/** Writes `count` messages of `stream` at `day` (YYYY-MM-DD) into a new sealed spool segment and compacts it into `dir`/logs. */
async function parquetFor(dir: string, stream: string, day: string, count: number, firstSeq = 1): Promise<void> {
  // The data dir's own spool: its segment numbers (and so the Parquet names) are never reused.
  const spoolDir = join(dir, "spool");
  const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  const t0 = Date.parse(`${day}T12:00:00Z`) * 1000;
  for (let i = 0; i < count; i++) spool.append({ stream, ts: t0 + i, seq: firstSeq + i, origin: "t", data: `{"v":${i}}`, size: 8 });
  spool.close();
  const r = await compactSegments(Spool.segments(spoolDir).map((f) => join(spoolDir, f)), join(dir, "logs"));
  expect(r.problems).toEqual([]);
}

const ask = (srv: { url: string; adminHeaders: Record<string, string> }, sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", body: JSON.stringify({ sql }), headers: srv.adminHeaders });

describe("unreadable Parquet files", () => {
  it("moves a garbage .parquet file to quarantine, reports and alerts, and the other streams stay queryable", async () => {
    const slack = startFakeSlack();
    const tmp = tempDir();
    try {
      await parquetFor(tmp.dir, "good", today(), 10);
      const bad = join(tmp.dir, "logs", "stream=bad", `date=${today()}`);
      mkdirSync(bad, { recursive: true });
      writeFileSync(join(bad, "seg999_0_0.parquet"), "this is not a Parquet file at all");
      const srv = await startTestServer({ alert_cooldown_seconds: 0 }, { dataDir: tmp.dir, slackWebhookUrl: slack.url("ok") });
      try {
        const res = await ask(srv, "SELECT stream, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1");
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual([{ stream: "good", n: "10" }]);
        const moved = join(tmp.dir, "quarantine", "logs", "stream=bad", `date=${today()}`, "seg999_0_0.parquet");
        expect(readFileSync(moved, "utf8")).toBe("this is not a Parquet file at all");
        expect(readFileSync(`${moved}.reason.txt`, "utf8")).toContain("unreadable Parquet file");
        expect(existsSync(join(bad, "seg999_0_0.parquet"))).toBe(false);
        await waitFor(() => srv.logs.some((l) => l.includes("moved an unreadable Parquet file to quarantine")), "the report in the log");
        await waitFor(() => slack.received.some((m) => m.text.includes("Log compaction is failing") && m.text.includes("seg999_0_0.parquet")), "the alert", 15_000);
      } finally {
        await srv.close();
      }
    } finally {
      slack.stop();
      tmp.remove();
    }
  });

  it("moves a valid Parquet file of another table (other columns) to quarantine, dropped in while running or while stopped, and every query goes on", async () => {
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const tmp = tempDir();
    /** A Parquet file of another table, in a folder that sorts before the log's own files (read first, its columns would be the view's). */
    const foreign = async (name: string, select: string) => {
      const dir = join(tmp.dir, "logs", "stream=0", `date=${today()}`);
      mkdirSync(dir, { recursive: true });
      const db = await DuckDBInstance.create(":memory:");
      const c = await db.connect();
      await c.run(`COPY (${select}) TO '${join(dir, name)}' (FORMAT parquet)`);
      c.closeSync();
      db.closeSync();
      return join(tmp.dir, "quarantine", "logs", "stream=0", `date=${today()}`, name);
    };
    try {
      await parquetFor(tmp.dir, "good", today(), 10);
      let srv = await startTestServer({}, { dataDir: tmp.dir });
      try {
        expect(await (await ask(srv, "SELECT stream, count(*) AS n FROM messages GROUP BY 1")).json()).toEqual([{ stream: "good", n: "10" }]);
        const moved = await foreign("notes.parquet", "SELECT 1 AS id, 'a note' AS note");
        // Seen at the engine's next listing of the folder (a file dropped in by hand: at most RELIST_MS later).
        await waitFor(async () => (await ask(srv, "SELECT 1")).ok && existsSync(moved), "the foreign file in quarantine", 30_000);
        expect(readFileSync(`${moved}.reason.txt`, "utf8")).toContain("not a file of the log: its columns are (id INTEGER, note VARCHAR)");
        expect(await (await ask(srv, "SELECT stream, count(*) AS n FROM messages GROUP BY 1")).json()).toEqual([{ stream: "good", n: "10" }]);
        expect((await fetch(`${srv.url}/api/streams/good/messages?source=log&after_seq=0`, { headers: srv.adminHeaders })).status).toBe(200);
      } finally {
        await srv.close();
      }
      // The same columns under other types, dropped in while the server was stopped.
      const moved = await foreign("typed.parquet", "SELECT 'yesterday' AS ts, 'one' AS seq, 'o' AS origin, 'text' AS kind, 'x' AS data");
      srv = await startTestServer({}, { dataDir: tmp.dir });
      try {
        const res = await ask(srv, "SELECT stream, count(*) AS n FROM messages GROUP BY 1");
        expect({ status: res.status, rows: await res.json(), moved: existsSync(moved) }).toEqual({ status: 200, rows: [{ stream: "good", n: "10" }], moved: true });
        expect(readFileSync(`${moved}.reason.txt`, "utf8")).toContain("not a file of the log: its columns are (ts VARCHAR, seq VARCHAR");
      } finally {
        await srv.close();
      }
    } finally {
      tmp.remove();
    }
  });

  it("quarantines a Parquet file whose footer reads but whose data does not, naming it in the error, and the next query works", async () => {
    const tmp = tempDir();
    try {
      await parquetFor(tmp.dir, "good", today(), 10);
      await parquetFor(tmp.dir, "torn", today(), 2000, 1);
      const dir = join(tmp.dir, "logs", "stream=torn", `date=${today()}`);
      const [file] = readdirSync(dir);
      const bytes = readFileSync(join(dir, file!));
      // Scribble over the data pages, keeping the footer (the last bytes) intact.
      for (let i = 4; i < bytes.length - 600; i++) bytes[i] = (bytes[i]! * 31 + 7) & 0xff;
      writeFileSync(join(dir, file!), bytes);
      const srv = await startTestServer({}, { dataDir: tmp.dir });
      try {
        const first = await ask(srv, "SELECT count(*) AS n, sum(length(data)) AS b FROM messages");
        if (first.status !== 200) {
          const msg = (await first.json()).error.message as string;
          expect(msg).toContain("moved to quarantine: run the query again");
        }
        const again = await ask(srv, "SELECT stream, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1");
        expect(again.status).toBe(200);
        expect(await again.json()).toEqual([{ stream: "good", n: "10" }]);
        expect(existsSync(join(tmp.dir, "quarantine", "logs", "stream=torn", `date=${today()}`, file!))).toBe(true);
      } finally {
        await srv.close();
      }
    } finally {
      tmp.remove();
    }
  });

  it("merges a closed day past a garbage file in it, and retention still runs", async () => {
    const tmp = tempDir();
    try {
      const yesterday = new Date(Date.now() - DAY_US / 1000).toISOString().slice(0, 10);
      await parquetFor(tmp.dir, "s", yesterday, 5, 1);
      await parquetFor(tmp.dir, "s", yesterday, 5, 6);
      await parquetFor(tmp.dir, "s", "2020-01-01", 3, 100);
      const closed = join(tmp.dir, "logs", "stream=s", `date=${yesterday}`);
      writeFileSync(join(closed, "garbage.parquet"), "PAR1 not really");
      writeFileSync(join(tmp.dir, "logs", "stream=s", "date=2020-01-01", "garbage.parquet"), "garbage");
      const srv = await startTestServer({ log_compact_seconds: 0, log_retention_days: 30 }, { dataDir: tmp.dir });
      try {
        const o = await srv.compactor.runOnce();
        expect(o.ok).toBe(true);
        // Merged into one file, the garbage moved out; the 2020 partition is past retention and gone.
        expect(readdirSync(closed).filter((f) => f.endsWith(".parquet"))).toHaveLength(1);
        expect(readdirSync(closed)[0]).toMatch(/^merged_\d+\.parquet$/);
        expect(existsSync(join(tmp.dir, "quarantine", "logs", "stream=s", `date=${yesterday}`, "garbage.parquet"))).toBe(true);
        expect(existsSync(join(tmp.dir, "logs", "stream=s", "date=2020-01-01"))).toBe(false);
        expect(srv.logs.some((l) => l.includes("log retention removed a partition"))).toBe(true);
        expect(srv.logs.some((l) => l.includes("moved an unreadable Parquet file to quarantine") && l.includes("garbage.parquet"))).toBe(true);
        const res = await ask(srv, "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM messages");
        expect(await res.json()).toEqual([{ n: "10", lo: "1", hi: "10" }]);
      } finally {
        await srv.close();
      }
    } finally {
      tmp.remove();
    }
  });

  it("switchyard query says 'query failed: …' without a stack trace, and quarantines a garbage file with a warning", async () => {
    const tmp = tempDir();
    try {
      await parquetFor(tmp.dir, "good", today(), 4);
      const bad = join(tmp.dir, "logs", "stream=bad", `date=${today()}`);
      mkdirSync(bad, { recursive: true });
      writeFileSync(join(bad, "x.parquet"), "garbage");
      const ok = await cli(["query", "SELECT count(*) AS n FROM messages", "--format", "csv", "--data-dir", tmp.dir]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toBe("n\n4\n");
      expect(ok.stderr).toContain("is unreadable");
      expect(ok.stderr).toContain("moved to");
      const failed = await cli(["query", "SELECT * FROM nowhere", "--data-dir", tmp.dir]);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/^query failed: .*nowhere/);
      expect(failed.stderr).not.toMatch(/\n\s+at /);
      // A data dir DuckDB cannot use (its temp folder is a file): still one line, no stack.
      rmSync(join(tmp.dir, "tmp"), { recursive: true, force: true });
      writeFileSync(join(tmp.dir, "tmp"), "not a folder");
      const broken = await cli(["query", "SELECT 1", "--data-dir", tmp.dir]);
      expect(broken.code).toBe(1);
      expect(broken.stderr).toMatch(/^query failed: /);
      expect(broken.stderr).not.toMatch(/\n\s+at /);
    } finally {
      tmp.remove();
    }
  });
});

describe("spool segments compaction cannot read", () => {
  it("compacts the intact records of a damaged segment, moves it to quarantine, and goes on with the next", async () => {
    const tmp = tempDir();
    try {
      const spoolDir = join(tmp.dir, "spool");
      const spool = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      const t0 = Date.now() * 1000;
      for (let i = 1; i <= 400; i++) spool.append({ stream: "a", ts: t0 + i, seq: i, origin: "t", data: `message ${i} ${"x".repeat(40)}`, size: 8 });
      spool.close();
      const again = Spool.open(spoolDir, { segmentBytes: 1 << 20, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
      for (let i = 401; i <= 410; i++) again.append({ stream: "a", ts: t0 + i, seq: i, origin: "t", data: `message ${i}`, size: 8 });
      again.close();
      const [damaged, healthy] = Spool.segments(spoolDir).map((f) => join(spoolDir, f));
      const bytes = readFileSync(damaged!);
      for (let i = 0; i < 4; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
      writeFileSync(damaged!, bytes);
      const r = await compactSegments([damaged!, healthy!], join(tmp.dir, "logs"));
      expect(r.segments).toBe(2);
      expect(r.problems).toHaveLength(1);
      const p = r.problems[0]!;
      expect(p.segment).toBe(damaged!);
      expect(p.error).toMatch(/unreadable records: at byte \d+ \(\d+ bytes: bad_crc\)/);
      expect(p.damage!.length).toBeGreaterThan(0);
      // Kept, byte for byte, in quarantine; nothing left in the spool or as temp files.
      expect(readFileSync(p.quarantined!)).toEqual(bytes);
      expect(p.quarantined).toBe(join(tmp.dir, "quarantine", "spool", damaged!.split("/").at(-1)!));
      expect(Spool.segments(spoolDir)).toEqual([]);
      expect(readdirSync(join(tmp.dir, "logs")).filter((f) => f.startsWith(".tmp-"))).toEqual([]);
      // The intact records before the damage and all of the next segment are queryable.
      const { QueryEngine } = await import("../app/analytics/engine.ts");
      const engine = await QueryEngine.open({ logsDir: join(tmp.dir, "logs"), spoolDir, tempDir: join(tmp.dir, "tmp", "duckdb") });
      const [row] = (await engine.query("SELECT count(*) AS n, max(seq) AS hi FROM messages WHERE seq > 400")).rows;
      expect(row).toEqual({ n: "10", hi: "410" });
      const [before] = (await engine.query("SELECT count(*) AS n FROM messages WHERE seq <= 400")).rows;
      expect(Number(before!.n)).toBe(r.rows - 10);
      expect(Number(before!.n)).toBeGreaterThan(100);
      engine.close();
    } finally {
      tmp.remove();
    }
  });

  it("goes on past a segment whose compaction fails, cleans its temp files, and quarantines it after three failed runs with an alert", async () => {
    const slack = startFakeSlack();
    const tmp = tempDir();
    // A file where the "bad" stream's partition folder must go: that segment's files cannot be moved into place.
    mkdirSync(join(tmp.dir, "logs"), { recursive: true });
    writeFileSync(join(tmp.dir, "logs", "stream=bad"), "in the way");
    const clock = offsetClock(); // segments age by it: no waiting a second for each to seal
    const srv = await startTestServer({ log_segment_seconds: 1, log_compact_seconds: 0, alert_cooldown_seconds: 0 }, { dataDir: tmp.dir, slackWebhookUrl: slack.url("ok"), clock });
    try {
      const post = (stream: string, body: string) => fetch(`${srv.url}/api/streams/${stream}/messages`, { method: "POST", body, headers: { "content-type": "text/plain" } });
      await post("bad", "b1");
      clock.advance(1100);
      await post("good", "g1"); // written to b1's segment, then seals it
      clock.advance(1100);
      await post("good", "g2"); // seals the next one, holding g2
      const sealed = () => Spool.segments(join(tmp.dir, "spool")).length - 1;
      // b1's segment and g1's (g2's too, when the spool's timer has sealed it by age already).
      expect(sealed()).toBeGreaterThanOrEqual(2);
      for (let run = 1; run <= 3; run++) {
        const o = await srv.compactor.runOnce();
        expect(o.ok).toBe(true);
        if (!o.ok) continue;
        expect(o.result.problems).toHaveLength(1);
        expect(o.result.problems[0]!.quarantined).toBeUndefined();
        expect(readdirSync(join(tmp.dir, "logs")).filter((f) => f.startsWith(".tmp-"))).toEqual([]);
      }
      // The good segment went through on the first run; the bad one waited.
      expect(sealed()).toBe(1);
      const fourth = await srv.compactor.runOnce();
      expect(fourth.ok && fourth.result.problems[0]!.quarantined).toContain(join(tmp.dir, "quarantine", "spool"));
      expect(sealed()).toBe(0);
      expect(readdirSync(join(tmp.dir, "quarantine", "spool")).filter((f) => f.endsWith(".wal"))).toHaveLength(1);
      // Alerted from the first failed run, naming the segment; the move to quarantine is logged.
      const name = readdirSync(join(tmp.dir, "quarantine", "spool")).find((f) => f.endsWith(".wal"))!;
      await waitFor(() => slack.received.some((m) => m.text.includes("Log compaction is failing") && m.text.includes(name)), "the alert", 15_000);
      expect(srv.logs.some((l) => l.includes("moved a spool segment to quarantine") && l.includes(name))).toBe(true);
      // Every message is in exactly one place: the quarantined segment (b1, and g1 when it shared
      // b1's segment: segments seal by age on the spool's timer) or the queryable log (g2 at least).
      const res = await ask(srv, "SELECT data FROM messages ORDER BY stream, seq");
      const queried = ((await res.json()) as { data: string }[]).map((r) => r.data);
      const kept = [...Spool.read(join(tmp.dir, "quarantine", "spool", name))].map((m) => m.data);
      expect(kept[0]).toBe("b1");
      expect(queried).toContain("g2");
      expect([...kept, ...queried].sort()).toEqual(["b1", "g1", "g2"]);
    } finally {
      await srv.close();
      slack.stop();
      tmp.remove();
    }
  });
});
