import { readFileSync } from "node:fs";

/** What the kernel says of a UDP socket: datagrams it dropped, and bytes waiting in its receive queue. */
export interface KernelUdpStats {
  drops: number;
  rxQueueBytes: number;
}

/**
 * Reads /proc/net/udp and /proc/net/udp6 for the socket bound to `port`, so loss
 * in the kernel (receive buffer full) can be told from rejects in the app.
 * Read through /proc/self/net, which the installed unit's ProcSubset=pid keeps
 * (it hides /proc/net). Returns null where /proc is not readable (not Linux, or hidden).
 */
export function kernelUdpStats(port: number, files = ["/proc/self/net/udp", "/proc/self/net/udp6"]): KernelUdpStats | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let found: KernelUdpStats | null = null;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13 || f[1]!.split(":")[1] !== hexPort) continue;
      found ??= { drops: 0, rxQueueBytes: 0 };
      found.drops += Number(f[f.length - 1]);
      found.rxQueueBytes += parseInt(f[4]!.split(":")[1]!, 16);
    }
  }
  return found;
}
