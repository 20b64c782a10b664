/** Runs one compaction in its own process, stopping it with SIGKILL at the step named (for the crash tests). */
import { appendFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { compactSegments, type CompactionOptions, type CompactionStep } from "../../app/log/compaction.ts";

const { segments, logsDir, crashAt, fromEngine } = JSON.parse(process.argv[2]!) as { segments: string[]; logsDir: string; crashAt?: CompactionStep; fromEngine?: boolean };
// fromEngine: as in the query process, segments its engine holds are written from its tables; each one
// handed over is noted in DATA/given (the process is killed before it could say so).
let loaded: CompactionOptions["loaded"];
if (fromEngine) {
  const { QueryEngine } = await import("../../app/analytics/engine.ts");
  const dir = dirname(logsDir);
  const engine = await QueryEngine.open({ logsDir, spoolDir: dirname(segments[0]!), tempDir: join(dir, "tmp") });
  loaded = async (segment) => {
    const l = await engine.loadedSegment(segment);
    if (l) appendFileSync(join(dir, "given"), `${segment}\n`);
    return l;
  };
}
const r = await compactSegments(segments, logsDir, { crashAt, loaded });
console.log(JSON.stringify(r));
