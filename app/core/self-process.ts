import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { join } from "node:path";

/**
 * The command line that runs this program again with `args`: the compiled
 * binary itself (which carries everything, DuckDB included), or Bun with
 * app/main.ts in a checkout. Child processes (the query engine, compaction)
 * start this way, so the single binary suffices.
 */
export function selfCommand(args: string[]): string[] {
  const compiled = import.meta.path.startsWith("/$bunfs/") || import.meta.path.startsWith("B:/~BUN/");
  return [...launcher, ...(compiled ? [process.execPath, ...args] : [process.execPath, join(import.meta.dir, "..", "main.ts"), ...args])];
}

let launcher: string[] = [];

/**
 * A command that child processes start through (SWITCHYARD_CHILD_LAUNCHER, e.g.
 * `qemu-aarch64-static -L /usr/aarch64-linux-gnu` for an arm64 binary emulated
 * on an x64 machine without binfmt); set once by main.
 */
export function setChildLauncher(words: string | undefined): void {
  launcher = (words ?? "").split(/\s+/).filter(Boolean);
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

/** A child's OOM score adjustment: under a memory limit the kernel kills a query or a compaction, not the hub. */
export const CHILD_OOM_SCORE_ADJ = 500;

/**
 * Lowers a child's scheduling priority (nice 10), so on a small box the hub's
 * fan-out wins the CPU over a query or a compaction, and makes it the kernel's
 * first choice when the service runs out of memory (oom_score_adj 500): the hub
 * notices, fails that query or compaction run with a clear error, and starts a
 * new child for the next one. Best effort.
 */
export function runInBackground(pid: number): void {
  try {
    setPriority(pid, CHILD_NICE);
  } catch {
    // not permitted here: it runs at normal priority
  }
  try {
    // Raising a process's own user's score needs no privilege.
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(CHILD_OOM_SCORE_ADJ));
  } catch {
    // not permitted (or no /proc): the kernel judges it by size alone
  }
}

/** The nice value of a query or compaction process. */
export const CHILD_NICE = 10;

/**
 * Run first in a child process: lowers each of its threads to at least nice
 * CHILD_NICE. The hub's setpriority (runInBackground) reaches the main thread
 * alone, and a thread the runtime started before it (on a busy box the hub can
 * be late by milliseconds) would keep nice 0; threads started later inherit
 * their starter's. Best effort, like runInBackground.
 */
export function lowerOwnThreads(): void {
  // Twice: a thread not yet lowered may start another while the first pass runs.
  for (let pass = 0; pass < 2; pass++) {
    let tids: string[];
    try {
      tids = readdirSync("/proc/self/task");
    } catch {
      return; // no /proc: the hub's move of the main thread is all there is
    }
    for (const tid of tids) lowerThread(Number(tid), CHILD_NICE);
  }
}

/** Gives thread `tid` nice value `nice` if it had a lower one (a higher priority); best effort. */
export function lowerThread(tid: number, nice: number): void {
  try {
    if (getPriority(tid) < nice) setPriority(tid, nice);
  } catch {
    // ended meanwhile, or not ours to change: it runs at its priority
  }
}

/** True while process `pid` runs (EPERM: it runs, as another user; ESRCH: it is gone). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
