import { existsSync, readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import { FFIType, ptr } from "bun:ffi";
import { libcFunctions } from "./libc.ts";
import { lowerThread } from "./self-process.ts";

/**
 * Linux scheduling classes for a whole process (every thread of it), through
 * libc's sched_setscheduler (bun:ffi): SCHED_IDLE runs a thread only on CPU
 * nothing else wants, and a woken normal thread takes the CPU from it at once.
 * A nice value alone does not do that: at nice 10 or 19 a busy query still cost
 * the hub's fan-out a quarter of its rate on a 2-core box.
 */
const SCHED_OTHER = 0;
const SCHED_IDLE = 5;
const RLIMIT_NICE = 13;
const CAP_SYS_NICE = 23;

/** null: no glibc, and the process keeps its class. */
const lib = libcFunctions({
  sched_setscheduler: { args: [FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
});

/**
 * Whether this process may go to SCHED_IDLE and come back. Leaving SCHED_IDLE
 * needs CAP_SYS_NICE or an RLIMIT_NICE that allows the process's nice value
 * (10 for the query process: LimitNICE=10 in the installed unit), and a process
 * that could not come back would stay idle, its compactions starved on a busy
 * box; so without either it never goes.
 */
export function mayGoIdle(): boolean {
  const c = lib();
  if (!c) return false;
  try {
    // The kernel asks for CAP_SYS_NICE in the first user namespace: root in a container's own
    // namespace (rootless podman, an unprivileged LXC) has it in CapEff and still may not come back.
    const status = readFileSync("/proc/self/status", "utf8");
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    const firstNamespace = readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).join(" ") === "0 0 4294967295";
    if (firstNamespace && eff && (BigInt(`0x${eff}`) >> BigInt(CAP_SYS_NICE)) & 1n) return true;
  } catch {
    // no /proc: judged by the limit alone
  }
  const limit = new BigUint64Array(2); // rlim_cur, rlim_max
  if (c.getrlimit(RLIMIT_NICE, ptr(limit)) !== 0) return false;
  // RLIMIT_NICE r lets a process set a nice value down to 20 - r (RLIM_INFINITY: any).
  return limit[0]! >= BigInt(20 - getPriority());
}

/**
 * Moves every thread of this process to SCHED_IDLE (`idle`) or back to
 * SCHED_OTHER at its nice value. Threads started later inherit the class of the
 * thread that starts them. Before going, each thread gets the main thread's
 * nice value if it had a lower one (one started before its parent lowered the
 * process's priority), so that each may come back. Returns whether every
 * thread moved (a thread that ended meanwhile counts as moved).
 */
export function setProcessIdle(idle: boolean): boolean {
  const c = lib();
  if (!c) return false;
  const param = new Int32Array(1); // struct sched_param { int sched_priority = 0 }
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return false;
  }
  const nice = getPriority();
  let all = true;
  for (const tid of tasks) {
    if (idle) lowerThread(Number(tid), nice); // one it could not change: its move below says so
    if (c.sched_setscheduler(Number(tid), idle ? SCHED_IDLE : SCHED_OTHER, ptr(param)) !== 0 && existsSync(`/proc/self/task/${tid}`)) all = false;
  }
  return all;
}
