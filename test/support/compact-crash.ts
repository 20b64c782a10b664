/** Runs one compaction in its own process, stopping it with SIGKILL at the step named (for the crash tests). */
import { compactSegments, type CompactionStep } from "../../app/log/compaction.ts";

const { segments, logsDir, crashAt } = JSON.parse(process.argv[2]!) as { segments: string[]; logsDir: string; crashAt?: CompactionStep };
const r = await compactSegments(segments, logsDir, { crashAt });
console.log(JSON.stringify(r));
