import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { bareEnv, distBinary } from "./binary-support.ts";
import { freeTcpPort, tempDir } from "./support/server.ts";
import { sClient, startPebble, type Pebble } from "./support/tls.ts";

// The compiled binary unpacks DuckDB and places a real ACME order: minutes on a loaded machine at worst.
setDefaultTimeout(180_000);

const DOMAIN = "binary.switchyard.test";
const bin = distBinary("linux-x64");

describe("the compiled binary gets a certificate by ACME (pebble)", () => {
  const tmp = tempDir("switchyard-tls-binary-");
  const redirectPort = freeTcpPort();
  let pebble: Pebble;
  beforeAll(async () => {
    if ("missing" in bin) return;
    pebble = await startPebble(tmp.dir, { httpPort: redirectPort, validitySeconds: 3600 });
  });
  afterAll(async () => {
    await pebble?.stop();
    tmp.remove();
  });

  it("serves HTTPS with the issued certificate, which openssl verifies against pebble's root", async () => {
    if ("missing" in bin) {
      if (bin.fail) throw new Error(bin.missing);
      return;
    }
    const port = freeTcpPort();
    const data = join(tmp.dir, "data");
    const p = Bun.spawn([...bin.prefix, bin.path, "serve", "--host", "127.0.0.1", "--port", String(port), "--udp-port", "0", "--data-dir", data,
      "--acme-domain", DOMAIN, "--acme-email", "ops@switchyard.test", "--acme-directory", pebble.directory, "--acme-ca-file", pebble.listenerCa, "--redirect-port", String(redirectPort)],
      { cwd: tmp.dir, env: bareEnv(tmp.dir), stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    let log = "";
    void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
    try {
      const deadline = Date.now() + 150_000;
      while (!log.includes("switchyard listening https=https://")) {
        if (p.exitCode !== null) throw new Error(`the binary exited with ${p.exitCode}:\n${log}`);
        if (Date.now() > deadline) throw new Error(`the binary did not listen:\n${log}`);
        await Bun.sleep(50);
      }
      expect(log).toContain("tls certificate issued");
      const root = join(tmp.dir, "root.pem");
      writeFileSync(root, await pebble.root());
      const s = await sClient(port, root, DOMAIN);
      expect(s.out).toContain("Verify return code: 0 (ok)");
      expect(s.code).toBe(0);
    } finally {
      p.kill("SIGTERM");
      await p.exited;
    }
  });
});
