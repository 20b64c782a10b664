import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { networkInterfaces } from "node:os";
import { readFileSync } from "node:fs";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { resolveStartupConfig } from "../app/config/startup.ts";
import { asAdmin, signIn } from "./support/admin.ts";
import { MAIN } from "./support/cli.ts";
import { connect } from "./support/client.ts";
import { freeUdpPort, startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers, UDP sockets and subprocesses: more than Bun's 5 s default on a busy machine.
setDefaultTimeout(60_000);

let srv: TestServer | null = null;
afterEach(async () => {
  await srv?.close();
  srv = null;
});

/** A non-loopback IPv4 address of this machine, if it has one (a sender that is not "on the box" by address). */
function outsideAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return null;
}

/** Sends `text` by UDP from `from` to 127.0.0.1:`port` (or `to`). */
async function sendFrom(from: string, port: number, text: string, to = "127.0.0.1"): Promise<void> {
  const s = await Bun.udpSocket({ hostname: from });
  s.send(text, port, to);
  s.close();
}

const rejects = (s: TestServer, reason: string) => s.udp.snapshot().listeners.reduce((n, l) => n + (l.rejected_by_reason[reason as "too_large"] ?? 0), 0);

describe("UDP under the access policy", () => {
  it("with access token, a sender outside udp_allow_sources reaches no token holder, and is counted as source_not_allowed everywhere reasons are listed", async () => {
    const port = await freeUdpPort();
    srv = await startTestServer({ access: "token", udp_allow_sources: ["127.0.0.2"] }, { udpPort: port });
    const token = await signStreamToken(srv.secret, { topic: "spin30", scopes: ["read", "write"], ttlSeconds: 60 });
    const sub = await connect(srv.wsUrl("spin30", `token=${token}`));
    // HTTP without a token is refused; so is the same message by UDP from a sender the operator did not list.
    expect((await fetch(`${srv.url}/api/streams/spin30/messages`, { method: "POST", body: "{}" })).status).toBe(401);
    await sendFrom("127.0.0.1", port, JSON.stringify({ stream: "spin30", v: "forged" }));
    await waitFor(() => rejects(srv!, "source_not_allowed") === 1, "the reject to be counted");
    // The listed sender gets through, and is the only message the subscriber sees.
    await sendFrom("127.0.0.2", port, JSON.stringify({ stream: "spin30", v: "allowed" }));
    expect(await sub.received(1)).toEqual([JSON.stringify({ stream: "spin30", v: "allowed" })]);
    await Bun.sleep(100);
    expect(sub.messages).toHaveLength(1);
    const sample = srv.udp.snapshot().recent_rejects[0]!;
    expect(sample).toMatchObject({ reason: "source_not_allowed", from: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(sample.detail).toContain("udp_allow_sources");
    // Listed where reasons are: the ingest API, /metrics, the dashboard.
    const ingest = await (await fetch(`${srv.url}/api/ingest?token=${token}`)).json();
    expect(ingest.udp.listeners[0].rejected_by_reason.source_not_allowed).toBe(1);
    const metrics = await (await fetch(`${srv.url}/metrics?token=${token}`)).text();
    expect(metrics).toContain(`reason="source_not_allowed"} 1`);
    const dashboard = await (await asAdmin(srv, await signIn(srv)).get("/admin")).text();
    expect(dashboard).toContain("source_not_allowed 1");
    sub.close();
  });

  it("with access token and no list, only senders on the box get in; open policies take any sender unless a list is set", async () => {
    const outside = outsideAddress();
    const port = await freeUdpPort();
    // UDP on 0.0.0.0 (startTestServer binds 127.0.0.1), so a sender on a non-loopback address can reach it.
    const { startServer } = await import("../app/server.ts");
    const { SettingsStore } = await import("../app/config/store.ts");
    const { silentLogger } = await import("../app/core/logger.ts");
    const tmp = tempDir();
    const store = SettingsStore.open(tmp.dir);
    store.update({ access: "token" });
    const running = await startServer({ config: { dataDir: tmp.dir, host: "127.0.0.1", port: 0, udpPort: port, udpHost: "0.0.0.0", udp: [], logLevel: "error", slackWebhookUrl: null, nodeId: "test-node", nats: [] }, store, logger: silentLogger });
    try {
      const seen = () => running.hub.stream("u1")?.messagesIn ?? 0;
      const count = (reason: string) => running.udp.snapshot().listeners[0]!.rejected_by_reason[reason as "too_large"] ?? 0;
      await sendFrom("127.0.0.1", port, '{"stream":"u1"}');
      await waitFor(() => seen() === 1, "the loopback sender's message");
      if (outside === null) {
        console.warn("this machine has no non-loopback address: the outside-sender cases are left out");
      } else {
        await sendFrom(outside, port, '{"stream":"u1"}', outside);
        await waitFor(() => count("source_not_allowed") === 1, "the outside sender to be refused");
        store.update({ access: "loopback-open" });
        await sendFrom(outside, port, '{"stream":"u1"}', outside);
        await waitFor(() => seen() === 2, "an outside sender under loopback-open");
        store.update({ udp_allow_sources: ["127.0.0.0/8"] });
        await sendFrom(outside, port, '{"stream":"u1"}', outside);
        await waitFor(() => count("source_not_allowed") === 2, "a list to apply under loopback-open too");
      }
      // A list that leaves out loopback leaves it out.
      store.update({ access: "token", udp_allow_sources: ["192.0.2.0/24"] });
      await sendFrom("127.0.0.1", port, '{"stream":"u1"}');
      await waitFor(() => count("source_not_allowed") === (outside ? 3 : 1), "loopback refused by the list");
      expect(seen()).toBe(outside ? 2 : 1);
    } finally {
      await running.stop();
      store.close();
      tmp.remove();
    }
  });

  it("refuses a bad udp_allow_sources saying what is allowed", async () => {
    srv = await startTestServer();
    const r = await fetch(`${srv.url}/api/settings`, { method: "PATCH", body: JSON.stringify({ udp_allow_sources: ["10.0.0.0/33", "x"] }), headers: srv.adminHeaders });
    expect(r.status).toBe(400);
    expect((await r.json()).error.message).toContain('udp_allow_sources: ["10.0.0.0/33","x"] is not valid; "10.0.0.0/33": the prefix length must be 0 to 32');
  });
});

describe("UDP listen address", () => {
  it("follows --host unless --udp-host says otherwise", () => {
    expect(resolveStartupConfig({ host: "127.0.0.1" }, {}).config.udpHost).toBe("127.0.0.1");
    expect(resolveStartupConfig({}, { SWITCHYARD_HOST: "::1" }).config.udpHost).toBe("::1");
    expect(resolveStartupConfig({ host: "127.0.0.1", "udp-host": "0.0.0.0" }, {}).config.udpHost).toBe("0.0.0.0");
    expect(resolveStartupConfig({}, {}).config.udpHost).toBe("0.0.0.0");
  });

  it("switchyard serve --host 127.0.0.1 binds its UDP port to 127.0.0.1 only (as the kernel lists it)", async () => {
    const port = await freeUdpPort();
    const tmp = tempDir();
    const p = Bun.spawn([process.execPath, MAIN, "serve", "--data-dir", tmp.dir, "--host", "127.0.0.1", "--port", "0", "--udp-port", String(port)], { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
    let log = "";
    void (async () => { for await (const c of p.stderr) log += new TextDecoder().decode(c); })();
    try {
      await waitFor(() => log.includes("udp listening"), "the UDP listener", 15_000);
      const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
      const bound = readFileSync("/proc/net/udp", "utf8").split("\n").map((l) => l.trim().split(/\s+/)[1]).filter((a) => a?.endsWith(`:${hexPort}`));
      expect(bound).toEqual([`0100007F:${hexPort}`]);
      expect(log).toContain(`address=127.0.0.1:${port}`);
    } finally {
      p.kill();
      await p.exited;
      tmp.remove();
    }
  });
});
