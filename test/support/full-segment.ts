import { join } from "node:path";
import { DEFAULT_SETTINGS } from "../../app/config/settings.ts";
import { silentLogger } from "../../app/core/logger.ts";
import { Spool } from "../../app/log/spool.ts";

/**
 * Writes one full default segment (64 MiB: about 370,000 websocket-sized
 * messages of ~180 bytes over 5 streams) into the spool at `spoolDir`, as the
 * hub would, and the start of the next one (the last flush's overflow);
 * returns how many messages it wrote. For the compaction tests and benchmark.
 */
export function writeFullSegment(spoolDir: string): number {
  const spool = Spool.open(spoolDir, { segmentBytes: DEFAULT_SETTINGS.log_segment_bytes, segmentSeconds: 3600, fsyncMs: 1000, logger: silentLogger });
  const t0 = Date.now() * 1000;
  let n = 0;
  while (Spool.segments(spoolDir).length < 2) {
    for (let k = 0; k < 1000; k++) {
      n++;
      spool.append({ stream: `rig${n % 5}`, ts: t0 + n, seq: Math.ceil(n / 5), origin: "ws", data: `{"t":${n},"v":0.123456789,"name":"sensor","x":"${"a".repeat(100)}"}`, size: 150 });
    }
    spool.flush();
  }
  spool.close();
  return n;
}

/** The path of the first (full) segment in `spoolDir`. */
export const firstSegment = (spoolDir: string) => join(spoolDir, Spool.segments(spoolDir)[0]!);
