/**
 * One compaction of the spool segments in `dir`/spool into `dir`/logs, for
 * bench/compaction.ts, in a process of its own: `file` reads each segment from
 * its file (a compaction child, or a segment the query engine does not hold);
 * `table` first opens the query engine over the spool (which reads the tail,
 * as the warm query process always has) and then writes each segment from the
 * engine's table, as the query process does. Prints one JSON line: the
 * compaction's CPU and wall time, the engine's load apart, rows and peak RSS.
 */
import { join } from "node:path";
import { QueryEngine } from "../../app/analytics/engine.ts";
import { compactSegments } from "../../app/log/compaction.ts";
import { Spool } from "../../app/log/spool.ts";

const { dir, mode } = JSON.parse(process.argv[2]!) as { dir: string; mode: "file" | "table" };
const spoolDir = join(dir, "spool");
const logsDir = join(dir, "logs");
const segments = Spool.segments(spoolDir).map((f) => join(spoolDir, f));
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
let engine: QueryEngine | null = null;
let loadMs = 0;
if (mode === "table") {
  const c0 = cpu();
  engine = await QueryEngine.open({ logsDir, spoolDir, tempDir: join(dir, "tmp", "duckdb") });
  loadMs = cpu() - c0;
}
const c0 = cpu();
const t0 = performance.now();
const r = await compactSegments(segments, logsDir, { loaded: engine ? (s) => engine!.loadedSegment(s) : undefined });
const out = { cpuMs: cpu() - c0, wallMs: performance.now() - t0, loadMs, rows: r.rows, readFromFile: r.readFromFile, problems: r.problems.length, peakRss: process.resourceUsage().maxRSS * 1024 };
engine?.close();
console.log(JSON.stringify(out));
