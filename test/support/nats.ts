import type { Subprocess } from "bun";
import { freeTcpPort } from "./server.ts";

/** Debian's nats-server. */
export const NATS_SERVER = "/usr/sbin/nats-server";

/** One nats-server process of a test cluster. */
export interface NatsNode {
  name: string;
  port: number;
  monitorPort: number;
  clusterPort: number;
  url: string;
  proc: Subprocess | null;
  /** Starts it (again, on the same ports). */
  start(): Promise<void>;
  /** SIGKILLs it. */
  kill(): Promise<void>;
  /** A monitoring endpoint's JSON (/varz, /routez, /connz, /subsz). */
  monitor<T = Record<string, unknown>>(path: string): Promise<T>;
}

/** Waits until `check` is true, polling; throws naming `what` after `ms`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not there yet (e.g. a server still starting).
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/**
 * Starts `size` nats-server processes on loopback, clustered by routes (each
 * names every other), with monitoring on; resolves once every route is up.
 */
export async function startNatsCluster(size = 3): Promise<NatsNode[]> {
  const ports = Array.from({ length: size }, () => ({ port: freeTcpPort(), monitorPort: freeTcpPort(), clusterPort: freeTcpPort() }));
  const nodes: NatsNode[] = ports.map((p, i) => {
    const node: NatsNode = {
      name: `n${i + 1}`, ...p, url: `nats://127.0.0.1:${p.port}`, proc: null,
      async start() {
        const routes = ports.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.clusterPort}`).join(",");
        node.proc = Bun.spawn([NATS_SERVER, "-a", "127.0.0.1", "-p", String(p.port), "-m", String(p.monitorPort), "-n", node.name,
          "--cluster_name", "sy-test", "--cluster", `nats://127.0.0.1:${p.clusterPort}`, "--routes", routes], { stdout: "ignore", stderr: "ignore" });
        await waitFor(`nats-server ${node.name} to listen`, async () => (await fetch(`http://127.0.0.1:${p.monitorPort}/healthz`)).ok);
      },
      async kill() {
        node.proc?.kill("SIGKILL");
        await node.proc?.exited;
        node.proc = null;
      },
      async monitor<T>(path: string): Promise<T> {
        const res = await fetch(`http://127.0.0.1:${p.monitorPort}${path}`);
        return (await res.json()) as T;
      },
    };
    return node;
  });
  await Promise.all(nodes.map((n) => n.start()));
  await waitFor("every NATS route to be up", async () => {
    const counts = await Promise.all(nodes.map((n) => n.monitor<{ num_routes: number }>("/routez").then((r) => r.num_routes)));
    return counts.every((c) => c >= size - 1);
  });
  return nodes;
}

/** Stops every server of a test cluster. */
export async function stopNatsCluster(nodes: NatsNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.kill()));
}
