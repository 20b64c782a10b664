import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newTokenSecret } from "../../app/auth/stream-token.ts";
import type { Settings } from "../../app/config/settings.ts";
import { SettingsStore } from "../../app/config/store.ts";
import { adminTokenSecret, signAdminToken } from "../../app/auth/admin-token.ts";
import { TOKEN_SECRET_NAME } from "../../app/server.ts";
import { waitForOutput } from "./proc.ts";

const MAIN = join(import.meta.dir, "..", "..", "app", "main.ts");

/** A `switchyard serve` subprocess on a temp data dir, for benchmarks. */
export interface SwitchyardProcess {
  port: number;
  url: string;
  pid: number;
  dataDir: string;
  /** The stream-token signing secret of this instance. */
  secret: string;
  /** An Authorization header with an admin token (for settings and queries). */
  adminHeaders: Record<string, string>;
  stop(): Promise<void>;
}

/** Starts `switchyard serve` with the given settings on 127.0.0.1 and a free port (UDP off unless `udpPort`); `extraArgs` go to serve (e.g. --tls-cert). */
export async function startSwitchyard(settings: Partial<Settings> = {}, udpPort = 0, existingDataDir?: string, extraArgs: string[] = []): Promise<SwitchyardProcess> {
  const dataDir = existingDataDir ?? mkdtempSync(join(tmpdir(), "switchyard-bench-"));
  const store = SettingsStore.open(dataDir);
  if (Object.keys(settings).length > 0) store.update(settings);
  const secret = store.secret(TOKEN_SECRET_NAME, newTokenSecret);
  const adminHeaders = { Authorization: `Bearer ${await signAdminToken(adminTokenSecret(store), 24 * 3600)}` };
  store.close();
  const proc = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", "--udp-host", "127.0.0.1", "--udp-port", String(udpPort), ...extraArgs],
    { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  const port = Number(await waitForOutput(proc, /https?=https?:\/\/127\.0\.0\.1:(\d+)/, "stderr"));
  const scheme = extraArgs.includes("--tls-cert") ? "https" : "http";
  return {
    port, url: `${scheme}://127.0.0.1:${port}`, pid: proc.pid, secret, adminHeaders, dataDir,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      if (!existingDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
