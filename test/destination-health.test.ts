import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { signStreamToken } from "../app/auth/stream-token.ts";
import { LogRateLimit } from "../app/relay/status.ts";
import { connect } from "./support/client.ts";
import { spawnServe } from "./support/cli.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "./support/server.ts";

// Real servers, a real relay process, and a 10 s window: well past Bun's 5 s default.
setDefaultTimeout(120_000);

const servers: TestServer[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  for (const f of cleanups.splice(0)) await f();
});
async function server(...args: Parameters<typeof startTestServer>) {
  const s = await startTestServer(...args);
  servers.push(s);
  return s;
}
const postRule = (srv: TestServer, rule: Record<string, unknown>) =>
  fetch(`${srv.url}/api/destinations`, { method: "POST", body: JSON.stringify(rule), headers: { "Content-Type": "application/json" } });
const status = async (srv: TestServer, id: string) => ((await (await fetch(`${srv.url}/api/destinations/${id}`)).json()) as { status: Record<string, unknown> }).status;
const firing = async (srv: TestServer) => ((await (await fetch(`${srv.url}/api/alerts`, { headers: srv.adminHeaders })).json()) as { firing: { rule: string; subject: string }[] }).firing;

describe("destinations: a refusing relay is not a reconnect storm", () => {
  it("makes a handful of attempts in 10 s against a real relay that accepts and at once closes (no code, bad token), shows the close code, logs little and fires the down alert", async () => {
    const relay = await server();
    // Real backoff (1 s doubling to 10 s): this is what a lab would run.
    const host = await server({ alert_destination_down_seconds: 2 });
    const badToken = await signStreamToken("not the relay's secret", { topic: "spin31-log", scopes: ["read", "write"], ttlSeconds: 3600, audience: relay.url });
    // Rule 0 dials the relay's session URL without an access code: the relay upgrades and closes with 1008.
    expect((await postRule(host, { id: "0", stream: "spin30", destination: `ws://127.0.0.1:${relay.port}/session/spin30-log`, token: "" })).status).toBe(200);
    // Rule 1 has a token the relay refuses at the access step.
    expect((await postRule(host, { id: "1", stream: "spin31", destination: `${relay.url}/session/spin31-log`, token: badToken })).status).toBe(200);
    const started = Date.now();
    await waitFor(async () => (await status(host, "0")).last_close_code === 1008, "the first refusal");
    // Measure over a fixed 10 s window: the number of attempts in it is the point of the test.
    await Bun.sleep(Math.max(0, 10_000 - (Date.now() - started)));
    const refusedOnRelay = relay.hub.totals.connectionsRefused.policy ?? 0;
    expect(refusedOnRelay).toBeGreaterThanOrEqual(2);
    expect(refusedOnRelay).toBeLessThanOrEqual(6);
    const s0 = await status(host, "0");
    expect(s0.attempts as number).toBeLessThanOrEqual(6);
    expect(s0).toMatchObject({ up: false, last_close_code: 1008 });
    expect(s0.last_close_reason).toContain("access code");
    expect(s0.last_error).toContain("refused");
    expect(s0.failures as number).toBeGreaterThanOrEqual(2);
    const s1 = await status(host, "1");
    expect(s1.attempts as number).toBeLessThanOrEqual(6);
    expect(s1.last_error).toContain("answered 401");
    // One warning line per destination per minute, not one per attempt.
    expect(host.logs.filter((l) => l.includes("destination failed")).length).toBe(2);
    const alerts = await firing(host);
    expect(alerts.filter((a) => a.rule === "destination_down").map((a) => a.subject).sort()).toEqual(["0", "1"]);
    const metrics = await (await fetch(`${host.url}/metrics`)).text();
    expect(metrics).toContain('switchyard_destination_connected{id="0",stream="spin30"} 0');
  });

  it("counts a connection that closes soon after opening as a failure even with a normal close code", async () => {
    let accepted = 0;
    const remote = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch(req, srv) { return srv.upgrade(req) ? undefined : new Response("upgrade", { status: 426 }); },
      websocket: { open(ws) { accepted++; ws.close(1000, "go away"); }, message() {} },
    });
    cleanups.push(() => remote.stop(true));
    const host = await server({}, { backoff: { baseMs: 1000, maxMs: 10_000 } });
    await postRule(host, { id: "0", stream: "spin30", destination: `ws://127.0.0.1:${remote.port}/x`, token: "" });
    await waitFor(() => accepted >= 2, "a second attempt", 10_000);
    const s = await status(host, "0");
    expect(s).toMatchObject({ last_close_code: 1000, last_close_reason: "go away", up: false });
    expect(s.last_error).toMatch(/closed with 1000: go away \d+ ms after opening/);
    // Two attempts came 1 s (±20 %) apart; a storm would have made hundreds by now.
    expect(accepted).toBeLessThanOrEqual(4);
  });

  it("lets one log line a minute through and counts the rest", () => {
    const limit = new LogRateLimit(60_000);
    expect(limit.take(0)).toBe(0);
    expect(limit.take(1000)).toBeNull();
    expect(limit.take(2000)).toBeNull();
    expect(limit.take(61_000)).toBe(2);
    limit.reset();
    expect(limit.take(61_500)).toBe(0);
  });
});

describe("destinations: a silent remote", () => {
  it("is declared down after relay_silence_seconds when the relay process is frozen (SIGSTOP), and reconnects when it thaws", async () => {
    const dir = tempDir();
    const relay = await spawnServe(dir.dir);
    cleanups.push(async () => { relay.p.kill("SIGCONT"); relay.p.kill(); await relay.p.exited; dir.remove(); });
    const host = await server({ relay_silence_seconds: 2, alert_destination_down_seconds: 1 }, { backoff: { baseMs: 200, maxMs: 1000 } });
    await postRule(host, { id: "0", stream: "spin30", destination: `ws://127.0.0.1:${relay.port}/ws/spin30-copy`, token: "" });
    await waitFor(async () => (await status(host, "0")).up === true, "the destination to be up", 20_000);
    const watcher = await connect(`ws://127.0.0.1:${relay.port}/ws/spin30-copy`);
    const pub = await connect(host.wsUrl("spin30"));
    pub.ws.send("before");
    expect(await watcher.received(1)).toEqual(["before"]);

    relay.p.kill("SIGSTOP");
    await waitFor(async () => {
      const s = await status(host, "0");
      return s.state !== "connected" && String(s.last_error).includes("sent nothing");
    }, "the frozen relay to be declared down", 20_000);
    const down = await status(host, "0");
    expect(down.up).toBe(false);
    await waitFor(async () => (await firing(host)).some((a) => a.rule === "destination_down" && a.subject === "0"), "the destination-down alert", 20_000);
    // What is sent now is counted as dropped, not pretended sent.
    const droppedBefore = down.dropped as number;
    pub.ws.send("while frozen");
    await waitFor(async () => ((await status(host, "0")).dropped as number) > droppedBefore, "the drop to be counted");

    relay.p.kill("SIGCONT");
    await waitFor(async () => (await status(host, "0")).up === true, "the destination to be up again", 30_000);
    pub.ws.send("after");
    await waitFor(() => watcher.messages.includes("after"), "a message after the thaw", 10_000);
    pub.close();
    watcher.close();
  });
});
