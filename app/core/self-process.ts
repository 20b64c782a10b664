import { readFileSync } from "node:fs";
import { setPriority } from "node:os";
import { join } from "node:path";

/**
 * The command line that runs this program again with `args`: the compiled
 * binary itself (which carries everything, DuckDB included), or Bun with
 * app/main.ts in a checkout. Child processes (the query engine, compaction)
 * start this way, so the single binary suffices.
 */
export function selfCommand(args: string[]): string[] {
  const compiled = import.meta.path.startsWith("/$bunfs/") || import.meta.path.startsWith("B:/~BUN/");
  return compiled ? [process.execPath, ...args] : [process.execPath, join(import.meta.dir, "..", "main.ts"), ...args];
}

/** Resident memory of a process in bytes, from /proc (0 when it cannot be read). */
export function residentBytes(pid: number): number {
  try {
    const statm = readFileSync(`/proc/${pid}/statm`, "utf8");
    return Number(statm.split(" ")[1]) * 4096;
  } catch {
    return 0;
  }
}

/**
 * Lowers a child's scheduling priority (nice 10), so on a small box the hub's
 * fan-out wins the CPU over a query or a compaction. Best effort.
 */
export function runInBackground(pid: number): void {
  try {
    setPriority(pid, 10);
  } catch {
    // not permitted here: it runs at normal priority
  }
}
