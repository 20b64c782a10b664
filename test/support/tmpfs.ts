import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A small real file system (tmpfs) a test can fill up and free again. */
export interface SmallDisk {
  dir: string;
  /** Writes a filler file until the file system is full (ENOSPC). */
  fill(): void;
  /** Removes the filler file. */
  free(): void;
  unmount(): void;
}

function tryMount(sizeKb: number): { disk: SmallDisk } | { problem: string } {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-disk-"));
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${sizeKb}k`, "tmpfs", dir], { stderr: "pipe" });
  if (r.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { problem: `cannot mount a tmpfs (${r.stderr.toString().trim() || `mount exited ${r.exitCode}`}): these tests need root or CAP_SYS_ADMIN` };
  }
  const filler = join(dir, "filler");
  return {
    disk: {
      dir,
      fill() {
        const chunk = Buffer.alloc(64 * 1024, 1);
        for (;;) {
          try { appendFileSync(filler, chunk); } catch { break; }
        }
        // The last partial page too.
        for (;;) {
          try { appendFileSync(filler, "x"); } catch { break; }
        }
      },
      free() {
        rmSync(filler, { force: true });
      },
      unmount() {
        Bun.spawnSync(["umount", "-l", dir]);
        rmSync(dir, { recursive: true, force: true });
      },
    },
  };
}

/**
 * Mounts a tmpfs of `sizeKb` for a test, or says why it cannot. Under CI=true
 * not being able to is an error, so the disk-full tests never silently vanish there.
 */
export function smallDisk(sizeKb = 2048): SmallDisk | null {
  const r = tryMount(sizeKb);
  if ("disk" in r) return r.disk;
  if (process.env.CI === "true") throw new Error(r.problem);
  return null;
}

/** Whether this machine lets the tests mount a tmpfs, and why not (printed once by the tests that skip). */
export const tmpfsProblem: string | null = (() => {
  const r = tryMount(64);
  if ("disk" in r) {
    r.disk.unmount();
    return null;
  }
  if (process.env.CI === "true") throw new Error(r.problem);
  console.warn(`SKIPPED disk-full tests: ${r.problem}`);
  return r.problem;
})();
