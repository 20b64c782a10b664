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
