/** Runs one merge of closed partitions in its own process, stopping it with SIGKILL at the step named. */
import { mergeClosedPartitions, type MergeStep } from "../../app/log/merge.ts";

const { logsDir, today, crashAt } = JSON.parse(process.argv[2]!) as { logsDir: string; today: string; crashAt?: MergeStep };
console.log(JSON.stringify(await mergeClosedPartitions(logsDir, today, { crashAt })));
