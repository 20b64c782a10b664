import { describe, expect, it } from "bun:test";
import { SettingsStore } from "../app/config/store.ts";
import { cli, MAIN } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { startTestServer, tempDir } from "./support/server.ts";

/** Runs the CLI with `input` on standard input. */
async function cliWithStdin(args: string[], input: string) {
  const p = Bun.spawn([process.execPath, MAIN, ...args], { stdin: new Blob([input]), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe("sharing the stream-token secret between cluster nodes", () => {
  it("makes a token signed on node A work on node B, and only there after the import", async () => {
    const [a, b] = [tempDir(), tempDir()];
    try {
      SettingsStore.open(a.dir).close();
      const exported = await cli(["secret", "export-token-secret", "--data-dir", a.dir]);
      expect(exported.code).toBe(0);
      const secret = exported.stdout.trim();
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const token = (await cli(["token", "--stream", "shared", "--data-dir", a.dir])).stdout.trim();

      // Before the import B refuses A's token …
      let srv = await startTestServer({ access: "token" }, { dataDir: b.dir });
      const refused = await connect(srv.wsUrl("shared", `token=${token}`));
      expect((await refused.closed).reason).toContain("signature does not match");
      await srv.close();

      // … after it (and a restart) B accepts it.
      const imported = await cliWithStdin(["secret", "import-token-secret", "--stdin", "--data-dir", b.dir], exported.stdout);
      expect(imported.stderr).toBe("");
      expect(imported.stdout).toContain("restart the server to apply it");
      srv = await startTestServer({ access: "token" }, { dataDir: b.dir });
      try {
        expect(srv.secret).toBe(secret);
        const sub = await connect(srv.wsUrl("shared", `token=${token}`));
        const pub = await connect(srv.wsUrl("shared", `token=${token}`));
        pub.ws.send("through B");
        expect(await sub.received(1)).toEqual(["through B"]);
        sub.close();
        pub.close();
      } finally {
        await srv.close();
      }
    } finally {
      a.remove();
      b.remove();
    }
  }, 60_000);

  it("refuses to import what is not a stream-token secret, saying what is allowed", async () => {
    const b = tempDir();
    try {
      SettingsStore.open(b.dir).close();
      const bad = await cliWithStdin(["secret", "import-token-secret", "--stdin", "--data-dir", b.dir], "short secret\n");
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain("allowed: what `switchyard secret export-token-secret` prints");
      const noStdin = await cli(["secret", "import-token-secret", "--data-dir", b.dir]);
      expect(noStdin.code).not.toBe(0);
      expect(noStdin.stderr).toContain("reads the secret from standard input");
      const missing = await cli(["secret", "export-token-secret", "--data-dir", `${b.dir}/nowhere`]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toContain("there is no settings store");
    } finally {
      b.remove();
    }
  }, 60_000);
});
