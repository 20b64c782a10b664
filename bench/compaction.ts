/**
 * Compaction benchmark: one full default spool segment (64 MiB of ~180-byte
 * messages over 5 streams, as the hub writes them) compacted to Parquet two
 * ways, each in a process of its own, round after round: from the segment's
 * file (the baseline: the way a compaction child, and every run before, does
 * it) and from the query engine's table of the same segment (what the warm
 * query process does now: the engine has read the spool tail for queries
 * anyway, and its load is reported apart). Prints CPU and wall time, peak RSS
 * and the ratio of CPU times.
 *
 *   npm run bench -- compaction [--rounds N] (default 3)
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SETTINGS } from "../app/config/settings.ts";
import { writeFullSegment } from "../test/support/full-segment.ts";
import { runClient } from "./support/proc.ts";

const ONCE = join(import.meta.dir, "support", "compact-once.ts");
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

interface Once { cpuMs: number; wallMs: number; loadMs: number; rows: number; readFromFile: number; problems: number; peakRss: number }

export async function run(args: string[]) {
  const i = args.indexOf("--rounds");
  const rounds = i >= 0 ? Number(args[i + 1]) : args.includes("--quick") ? 1 : 3;
  const source = mkdtempSync(join(tmpdir(), "switchyard-bench-compaction-"));
  try {
    const messages = writeFullSegment(join(source, "spool"));
    const results: Record<"file" | "table", Once[]> = { file: [], table: [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of ["file", "table"] as const) {
        const dir = join(source, `${mode}-${r}`);
        mkdirSync(dir);
        cpSync(join(source, "spool"), join(dir, "spool"), { recursive: true });
        results[mode].push(await runClient<Once>(ONCE, { dir, mode }));
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const f = results.file, t = results.table;
    for (const x of [...f, ...t]) if (x.problems || x.rows !== f[0]!.rows) throw new Error(`a run did not compact every message: ${JSON.stringify(x)}`);
    // A table run that fell back to the file (the COPY failed) would measure the baseline twice.
    for (const x of t) if (x.readFromFile) throw new Error(`a run from the engine's table read ${x.readFromFile} segment(s) from their files: ${JSON.stringify(x)}`);
    console.log(`compaction of one full ${mib(DEFAULT_SETTINGS.log_segment_bytes)} segment (${f[0]!.rows.toLocaleString("en-US")} messages of ${messages.toLocaleString("en-US")} written), ${rounds} rounds, medians; Bun ${Bun.version}, ${navigator.hardwareConcurrency} cores`);
    console.log("| | from the segment's file (baseline) | from the query engine's table |");
    console.log("|---|---|---|");
    console.log(`| compaction CPU | ${median(f.map((x) => x.cpuMs)).toFixed(0)} ms | ${median(t.map((x) => x.cpuMs)).toFixed(0)} ms |`);
    console.log(`| compaction wall time | ${median(f.map((x) => x.wallMs)).toFixed(0)} ms | ${median(t.map((x) => x.wallMs)).toFixed(0)} ms |`);
    console.log(`| reading the segment into the engine (done for queries anyway) | none | ${median(t.map((x) => x.loadMs)).toFixed(0)} ms CPU |`);
    console.log(`| peak RSS of the process | ${mib(median(f.map((x) => x.peakRss)))} | ${mib(median(t.map((x) => x.peakRss)))} |`);
    console.log(`\nratio of compaction CPU, table / file: **${(median(t.map((x) => x.cpuMs)) / median(f.map((x) => x.cpuMs))).toFixed(2)}**`);
  } finally {
    rmSync(source, { recursive: true, force: true });
  }
}
