import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Settings } from "../../app/config/settings.ts";
import { systemClock, type Clock } from "../../app/core/clock.ts";
import type { UdpListenerSpec } from "../../app/core/udp-spec.ts";
import type { Backoff } from "../../app/relay/status.ts";
import type { TlsStartup } from "../../app/tls/startup.ts";
import { SettingsStore } from "../../app/config/store.ts";
import { adminTokenSecret, signAdminToken } from "../../app/auth/admin-token.ts";
import { createLogger, type Logger } from "../../app/core/logger.ts";
import { startServer, TOKEN_SECRET_NAME, type RunningServer, type ServerOptions } from "../../app/server.ts";

/** Runs `fn` in a fresh temp folder, removed afterwards whether it passed or threw. */
export async function inTempDir<T>(fn: (dir: string) => T | Promise<T>): Promise<T> {
  const tmp = tempDir();
  try {
    return await fn(tmp.dir);
  } finally {
    tmp.remove();
  }
}

/** A fresh temp folder, removed by the returned function. */
export function tempDir(prefix = "switchyard-test-"): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A server on an ephemeral port with a temp data dir, plus what tests need to poke at it. */
export interface TestServer extends RunningServer {
  dataDir: string;
  store: SettingsStore;
  secret: string;
  /** An Authorization header with an admin token of this server (an hour long). */
  adminHeaders: Record<string, string>;
  logs: string[];
  wsUrl(stream: string, query?: string): string;
  close(): Promise<void>;
}

/** A UDP port that was free a moment ago (bound to port 0 and released). */
export async function freeUdpPort(): Promise<number> {
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const port = s.port;
  s.close();
  return port;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (listened on with port 0 and released). */
export function freeTcpPort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** The system clock plus an offset a test moves forward, instead of sleeping through a wait the server measures. */
export function offsetClock(): Clock & { advance(ms: number): void } {
  let offset = 0;
  return {
    nowMicros: () => systemClock.nowMicros() + offset * 1000,
    nowMillis: () => systemClock.nowMillis() + offset,
    advance: (ms) => { offset += ms; },
  };
}

/** Startup options a test may set: the main UDP port (0: off) and extra listeners. */
export interface TestStartup {
  udpPort?: number;
  udp?: UdpListenerSpec[];
  /** HTTP port (default: a free one). */
  port?: number;
  /** Reuse this data dir (it is then not removed by close()). */
  dataDir?: string;
  /** Destination reconnect timing. */
  backoff?: Backoff;
  /** As if SWITCHYARD_SLACK_WEBHOOK_URL were set. */
  slackWebhookUrl?: string;
  /** This node's id (default "test-node") and the NATS servers it joins. */
  nodeId?: string;
  nats?: string[];
  /** Alert timing and inputs that tests control. */
  slackRetryMs?: number;
  diskSpace?: () => { free: number; total: number };
  alertWindowTicks?: number;
  /** The server's clock (see offsetClock). */
  clock?: Clock;
  /** Where the startup values came from, as serve would say. */
  configSources?: ServerOptions["configSources"];
  /** HTTPS: certificate files or ACME, as the --tls-* and --acme-* flags give them. */
  tls?: TlsStartup;
  acmeRetryMs?: number;
  /** S3 credentials as the environment would give them (SWITCHYARD_S3_*), and the longest offload retry wait. */
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
  offloadRetryMaxMs?: number;
}

/** Starts a real Switchyard (Bun.serve, hub, settings store, UDP when asked) on 127.0.0.1 and free ports. */
export async function startTestServer(settings: Partial<Settings> = {}, startup: TestStartup = {}): Promise<TestServer> {
  const tmp = startup.dataDir ? { dir: startup.dataDir, remove() {} } : tempDir();
  const store = SettingsStore.open(tmp.dir);
  if (Object.keys(settings).length > 0) store.update(settings);
  const logs: string[] = [];
  const logger: Logger = createLogger("debug", (l) => logs.push(l));
  const running = await startServer({
    config: { dataDir: tmp.dir, host: "127.0.0.1", port: startup.port ?? 0, udpPort: startup.udpPort ?? 0, udpHost: "127.0.0.1", udp: startup.udp ?? [], logLevel: "debug", slackWebhookUrl: startup.slackWebhookUrl ?? null, nodeId: startup.nodeId ?? "test-node", nats: startup.nats ?? [], s3Credentials: startup.s3Credentials ? { ...startup.s3Credentials, source: "SWITCHYARD_S3_*" } : null, ...startup.tls },
    configSources: startup.configSources, store, logger, backoff: startup.backoff, slackRetryMs: startup.slackRetryMs, diskSpace: startup.diskSpace, alertWindowTicks: startup.alertWindowTicks, acmeRetryMs: startup.acmeRetryMs, clock: startup.clock, offloadRetryMaxMs: startup.offloadRetryMaxMs,
  });
  const secret = store.secret(TOKEN_SECRET_NAME, () => "unused");
  const adminHeaders = { Authorization: `Bearer ${await signAdminToken(adminTokenSecret(store), 3600)}` };
  return {
    ...running,
    dataDir: tmp.dir, store, secret, adminHeaders, logs,
    wsUrl: (stream, query) => `${running.tls ? "wss://localhost" : "ws://127.0.0.1"}:${running.port}/ws/${stream}${query ? `?${query}` : ""}`,
    async close() {
      await running.stop();
      store.close();
      tmp.remove();
    },
  };
}

/** An Authorization header with an admin token for the server of `dataDir` (as `switchyard token --admin` makes). */
export async function adminHeadersFor(dataDir: string): Promise<Record<string, string>> {
  const store = SettingsStore.open(dataDir);
  try {
    return { Authorization: `Bearer ${await signAdminToken(adminTokenSecret(store), 3600)}` };
  } finally {
    store.close();
  }
}

/** Polls `check` until it returns true or `ms` pass; throws with `what` on time-out. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** Runs `sql` through POST /api/query of the server at `url` and returns the rows (JSON); any other answer than 200 throws with its body. */
export async function sqlRows(url: string, sql: string, headers: Record<string, string>): Promise<Record<string, unknown>[]> {
  const r = await fetch(`${url}/api/query`, { method: "POST", body: JSON.stringify({ sql, format: "json" }), headers });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`POST /api/query answered ${r.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>[];
}
