import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli } from "./support/cli.ts";
import { tempDir } from "./support/server.ts";

setDefaultTimeout(120_000);

describe("switchyard query --format parquet --output DIR/FILE", () => {
  it("does not let the query read other files in DIR, and still writes the Parquet file there", async () => {
    const tmp = tempDir();
    try {
      const out = join(tmp.dir, "exports");
      mkdirSync(out);
      const secret = "the-secret-of-this-folder";
      writeFileSync(join(out, "private.csv"), `k\n${secret}\n`);
      const dataDir = join(tmp.dir, "data");
      const stolen = join(out, "stolen.parquet");
      const attack = await cli(["query", `SELECT * FROM read_csv('${join(out, "private.csv")}')`, "--format", "parquet", "--output", stolen, "--data-dir", dataDir]);
      expect(attack.code).toBe(1);
      expect(attack.stderr).toContain("query failed");
      expect(existsSync(stolen)).toBe(false);

      const ok = await cli(["query", "SELECT 42 AS answer", "--format", "parquet", "--output", join(out, "answer.parquet"), "--data-dir", dataDir]);
      expect(ok.stderr).toContain("wrote 1 rows");
      expect(ok.code).toBe(0);
      const file = readFileSync(join(out, "answer.parquet"));
      expect(file.subarray(0, 4).toString()).toBe("PAR1");
      // The private staging folder is gone.
      expect(readdirSync(tmpdir()).filter((n) => n.startsWith("switchyard-export-"))).toEqual([]);
    } finally {
      tmp.remove();
    }
  });

  it("says so when the output folder does not exist", async () => {
    const tmp = tempDir();
    try {
      const r = await cli(["query", "SELECT 1", "--format", "parquet", "--output", join(tmp.dir, "missing", "x.parquet"), "--data-dir", join(tmp.dir, "data")]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("cannot write --output");
    } finally {
      tmp.remove();
    }
  });
});

describe("POST /api/query with format parquet", () => {
  it("stops an export once its file passes query_result_mb (not after writing it whole), and removes what a killed export left", async () => {
    const { startTestServer } = await import("./support/server.ts");
    const srv = await startTestServer({ query_result_mb: 1, query_timeout_seconds: 3 });
    const exportDir = join(srv.dataDir, "tmp", "export");
    const files = () => (existsSync(exportDir) ? readdirSync(exportDir) : []);
    const ask = (sql: string) => fetch(`${srv.url}/api/query`, { method: "POST", headers: srv.adminHeaders, body: JSON.stringify({ sql, format: "parquet" }) });
    try {
      // About 400 MB of Parquet if written whole: the file is watched as it grows.
      let biggest = 0;
      const { statSync } = await import("node:fs");
      const watch = setInterval(() => { for (const f of files()) try { biggest = Math.max(biggest, statSync(join(exportDir, f)).size); } catch { /* removed meanwhile */ } }, 20);
      const big = await ask("SELECT sha256(i::VARCHAR) || sha256((i + 1)::VARCHAR) || sha256((i + 2)::VARCHAR) || sha256((i + 3)::VARCHAR) AS h FROM range(3000000) t(i)");
      clearInterval(watch);
      const text = await big.text();
      expect({ status: big.status, said: text.includes("larger than 1 MB (query_result_mb)"), left: files() }).toEqual({ status: 400, said: true, left: [] });
      expect(biggest).toBeLessThan(32 * 1024 * 1024);
      // Rows of 512 characters that do not compress: DuckDB's default row group (122,880 rows) alone is 63 MB,
      // built whole in memory before any of it is written (out of memory, past the cap unseen).
      const wide = await ask("SELECT sha256(i::VARCHAR) || sha256((i + 1)::VARCHAR) || sha256((i + 2)::VARCHAR) || sha256((i + 3)::VARCHAR) || sha256((i + 4)::VARCHAR) || sha256((i + 5)::VARCHAR) || sha256((i + 6)::VARCHAR) || sha256((i + 7)::VARCHAR) AS h FROM range(3000000) t(i)");
      const wideText = await wide.text();
      expect({ status: wide.status, said: wideText.includes("larger than 1 MB (query_result_mb)") ? true : wideText.slice(0, 200), left: files() }).toEqual({ status: 400, said: true, left: [] });
      // An export DuckDB cannot interrupt (levenshtein after 200,000 rows): its process is killed with its file half written.
      const stuck = await ask("SELECT i, CASE WHEN i < 200000 THEN i::VARCHAR ELSE levenshtein(repeat('a', 60000 + (i % 2)::INT), repeat('b', 60000))::VARCHAR END AS v FROM range(300000) t(i)");
      expect(stuck.status).toBe(400);
      expect((await stuck.text())).toContain("took longer than 3 s");
      const left = files();
      expect(left.length).toBe(1);
      expect(left[0]).toMatch(/^export-\d+-\d+-[0-9a-f-]{36}\.parquet$/);
      // Files of the naming before (export-<query id>-<uuid>, no pid) are left by a process of the version before.
      const { writeFileSync: write } = await import("node:fs");
      for (const old of ["export-1-0b6f7a54-6c1e-4f0e-9d56-0c1f3a7c2a11.parquet", "export-2-5e0c2b9a-1f4d-4a55-8e3b-77d2c0a9f4b2.parquet"]) write(join(exportDir, old), "half an export");
      // The next query process removes them; exports keep working.
      const ok = await ask("SELECT 42 AS answer");
      expect(ok.status).toBe(200);
      expect(Buffer.from(await ok.arrayBuffer()).subarray(0, 4).toString()).toBe("PAR1");
      expect(files()).toEqual([]);
    } finally {
      await srv.close();
    }
  });
});
