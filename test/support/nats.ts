import type { Subprocess } from "bun";
import { freeTcpPort, waitFor } from "./server.ts";

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

/** `check`, with a throw (a server still starting) read as false, but for a server that exited. */
const settled = (check: () => Promise<boolean>) => () =>
  check().catch((e) => {
    if (e instanceof NatsExited) throw e;
    return false;
  });

/**
 * Starts `size` nats-server processes on loopback, clustered by routes (each
 * names every other), with monitoring on; resolves once every route is up.
 */
export async function startNatsCluster(size = 3): Promise<NatsNode[]> {
  // The ports are picked free, then bound by the servers a moment later; in between another process's
  // outgoing connection (a route of this very cluster, say) can take one. A server that exits instead
  // of listening is not waited for: the cluster is started again on other ports, a few times.
  for (let attempt = 1; ; attempt++) {
    const nodes = clusterOn(size);
    try {
      // Every start settled before any is stopped: one still retrying would start a server after the stop.
      const starts = await Promise.allSettled(nodes.map((n) => n.start()));
      const failed = starts.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      await routesUp(nodes);
      return nodes;
    } catch (e) {
      await stopNatsCluster(nodes);
      if (!(e instanceof NatsExited) || attempt === 5) throw e;
      console.warn(`${e.message}; starting the NATS cluster again on other ports`);
    }
  }
}

/** A nats-server that exited before it listened, with what it printed. */
class NatsExited extends Error {}

function clusterOn(size: number): NatsNode[] {
  const ports = Array.from({ length: size }, () => ({ port: freeTcpPort(), monitorPort: freeTcpPort(), clusterPort: freeTcpPort() }));
  return ports.map((p, i) => {
    const listening = async () => {
      const routes = ports.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.clusterPort}`).join(",");
      const proc = Bun.spawn([NATS_SERVER, "-a", "127.0.0.1", "-p", String(p.port), "-m", String(p.monitorPort), "-n", node.name,
        "--cluster_name", "sy-test", "--cluster", `nats://127.0.0.1:${p.clusterPort}`, "--routes", routes], { stdout: "ignore", stderr: "pipe" });
      node.proc = proc;
      const output = new Response(proc.stderr).text();
      let exited: number | null = null;
      void proc.exited.then((code) => { exited = code; });
      await waitFor(settled(async () => {
        if (exited !== null) {
          if (node.proc === proc) node.proc = null;
          const last = (await output).trim().split("\n").slice(-2).join(" | ");
          throw new NatsExited(`nats-server ${node.name} exited with ${exited} before it listened: ${last}`);
        }
        return (await fetch(`http://127.0.0.1:${p.monitorPort}/healthz`)).ok;
      }), `nats-server ${node.name} to listen`, 30_000);
    };
    const node: NatsNode = {
      name: `n${i + 1}`, ...p, url: `nats://127.0.0.1:${p.port}`, proc: null,
      async start() {
        // A server that exits at once (its port taken for a moment) is started again, twice at most.
        for (let attempt = 1; ; attempt++) {
          try {
            return await listening();
          } catch (e) {
            if (!(e instanceof NatsExited) || attempt === 3) throw e;
            await Bun.sleep(500);
          }
        }
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
}

/** Stops every server of a test cluster. */
export async function stopNatsCluster(nodes: NatsNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.kill()));
}

/** Waits until every running server has a route to every other running one. */
export async function routesUp(nodes: NatsNode[]): Promise<void> {
  const running = nodes.filter((n) => n.proc !== null);
  await waitFor(settled(async () => {
    const counts = await Promise.all(running.map((n) => n.monitor<{ num_routes: number }>("/routez").then((r) => r.num_routes)));
    return counts.every((c) => c >= running.length - 1);
  }), "every NATS route to be up", 30_000);
}
