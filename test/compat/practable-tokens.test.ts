import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../support/client.ts";
import { MAIN } from "../support/cli.ts";
import { startTestServer, tempDir, waitFor, type TestServer } from "../support/server.ts";

// Real servers, the real CLI in subprocesses.
setDefaultTimeout(60_000);

const servers: TestServer[] = [];
const dirs: { remove(): void }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) d.remove();
});

/** The lab's relay secret, as its practable relay was started with. */
const LAB_SECRET = "a-lab-relay-secret-from-2025";

/** Runs the CLI with `stdin`, a clean SWITCHYARD_* environment plus `env`. */
async function cli(args: string[], stdin = "", env: Record<string, string> = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
  const p = Bun.spawn([process.execPath, MAIN, ...args], { env: { ...clean, ...env }, stdin: new Blob([stdin]), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

const b64url = (x: string | Buffer) => Buffer.from(x).toString("base64url");

/**
 * A token exactly as practable's `relay token` makes one: golang-jwt's header
 * {"alg","typ"}, then the permission.Token struct's fields in order (booking_id,
 * topic, prefix, scopes, then the registered claims aud, exp, nbf, iat), scopes
 * in its order (relay:admin, write, read, other), iat = nbf = now - 1 s.
 */
function practableRelayToken(env: { secret: string; topic: string; audience: string; lifetime: number; bookingId?: string; connectionType?: string; read?: boolean; write?: boolean; admin?: boolean; other?: string; alg?: "HS256" | "HS384" | "HS512"; now?: number }) {
  const scopes = [...(env.admin ? ["relay:admin"] : []), ...(env.write ?? true ? ["write"] : []), ...(env.read ?? true ? ["read"] : []), ...(env.other ? [env.other] : [])];
  const iat = Math.floor((env.now ?? Date.now() / 1000)) - 1;
  const payload = { booking_id: env.bookingId ?? "relay-token-cli", topic: env.topic, prefix: env.connectionType ?? "session", scopes, aud: [env.audience], exp: iat + env.lifetime, nbf: iat, iat };
  return signRaw({ alg: env.alg ?? "HS256", typ: "JWT" }, payload, env.secret);
}

/** Signs any header and payload with HMAC (HS256/384/512 by the header's alg). */
function signRaw(header: Record<string, unknown>, payload: unknown, secret: string): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const hash = { HS256: "sha256", HS384: "sha384", HS512: "sha512" }[header.alg as string] ?? "sha256";
  return `${input}.${createHmac(hash, secret).update(input).digest("base64url")}`;
}

const decode = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
const access = (srv: TestServer, topic: string, token: string, headers: Record<string, string> = {}) =>
  fetch(`${srv.url}/session/${topic}`, { method: "POST", headers: { Authorization: token, ...headers } });

/** A Switchyard whose data dir has the lab's secret imported with `switchyard secret set --stdin`. */
async function relayWithLabSecret(settings: Parameters<typeof startTestServer>[0] = {}) {
  const tmp = tempDir();
  dirs.push(tmp);
  const set = await cli(["secret", "set", "--stdin", "--data-dir", tmp.dir], `${LAB_SECRET}\n`);
  expect(set.code).toBe(0);
  expect(set.stdout).toMatch(/^stored the practable relay secret \(fingerprint [0-9a-f]{12}\)\n$/);
  expect(set.stdout + set.stderr).not.toContain(LAB_SECRET);
  const show = await cli(["secret", "show", "--data-dir", tmp.dir]);
  expect(show.stdout).toMatch(/^set \(from the settings store\), fingerprint [0-9a-f]{12}\n$/);
  const srv = await startTestServer(settings, { dataDir: tmp.dir });
  servers.push(srv);
  return srv;
}

describe("compat: a lab's practable tokens, with the relay secret imported", () => {
  it("accepts tokens built exactly as practable's relay token builds them (HS256, HS384, HS512) on /session and /ws", async () => {
    const relay = await relayWithLabSecret({ access: "token" });
    for (const alg of ["HS256", "HS384", "HS512"] as const) {
      const token = practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 31_536_000, alg });
      const res = await access(relay, "spin30-log", token);
      expect(res.status).toBe(200);
      const { uri } = (await res.json()) as { uri: string };
      const session = await connect(uri);
      const watcher = await connect(relay.wsUrl("spin30-log", `token=${token}`));
      session.ws.send(`hello ${alg}`);
      expect(await watcher.received(1)).toEqual([`hello ${alg}`]);
      session.close();
      watcher.close();
    }
    // aud as a plain string is practable's other accepted form.
    const stringAud = signRaw({ alg: "HS256", typ: "JWT" }, { ...decode(practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 60 })), aud: relay.url }, LAB_SECRET);
    expect((await access(relay, "spin30-log", stringAud)).status).toBe(200);
    // This box's own tokens still work beside the imported ones.
    const own = await cli(["token", "--stream", "spin30-log", "--audience", relay.url, "--ttl", "1h", "--data-dir", relay.dataDir]);
    expect((await access(relay, "spin30-log", own.stdout.trim())).status).toBe(200);
  });

  it("refuses what practable refuses: no HMAC, malformed or missing aud, another audience (whatever the Host says), no prefix, another secret", async () => {
    const relay = await relayWithLabSecret();
    const base = decode(practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 3600 }));
    const cases: [string, string, string][] = [
      ["alg none", `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify(base))}.`, "must be signed with HMAC"],
      ["RS256 header", signRaw({ alg: "RS256", typ: "JWT" }, base, LAB_SECRET), "must be signed with HMAC"],
      ["aud an object", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, aud: { url: relay.url } }, LAB_SECRET), "aud claim must be a string or an array of strings"],
      ["aud with a number", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, aud: [relay.url, 7] }, LAB_SECRET), "aud claim must be a string or an array of strings"],
      ["no aud", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, aud: undefined }, LAB_SECRET), "no audience"],
      ["no prefix", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, prefix: undefined }, LAB_SECRET), "no prefix claim"],
      ["shell prefix", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, prefix: "shell" }, LAB_SECRET), 'is not "session"'],
      ["booking_id a number", signRaw({ alg: "HS256", typ: "JWT" }, { ...base, booking_id: 5 }, LAB_SECRET), "booking_id claim must be a string"],
      ["another secret", practableRelayToken({ secret: "some-other-relay-secret", topic: "spin30-log", audience: relay.url, lifetime: 3600 }), "signature does not match"],
    ];
    for (const [name, token, why] of cases) {
      const res = await access(relay, "spin30-log", token);
      expect([name, res.status]).toEqual([name, 401]);
      expect([name, ((await res.json()) as { detail: string }).detail]).toEqual([name, expect.stringContaining(why)]);
    }
    // A token for another relay, sent with that relay's name as Host: the audience never comes from Host.
    const other = practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: "https://relay.other-lab.org", lifetime: 3600 });
    const spoofed = await access(relay, "spin30-log", other, { Host: "relay.other-lab.org" });
    expect(spoofed.status).toBe(401);
    expect(((await spoofed.json()) as { detail: string }).detail).toContain("does not include this server");
    // With public_url set, that is the one audience.
    relay.store.update({ public_url: "https://relay.example.org" });
    expect((await access(relay, "spin30-log", practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: "https://relay.example.org", lifetime: 60 }))).status).toBe(200);
    expect((await access(relay, "spin30-log", practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 60 }))).status).toBe(401);
  });

  it("writes device token files as practable's configure does, signed with the imported secret, claims as relay token makes them", async () => {
    const relay = await relayWithLabSecret();
    const out = join(relay.dataDir, "tokens");
    const before = Math.floor(Date.now() / 1000);
    const made = await cli(["token", "--relay-secret", "--prefix", "spin", "--from", "30", "--to", "31", "--kind", "log", "--access-url", "https://relay.example.org", "--out", out, "--data-dir", relay.dataDir]);
    expect(made.code).toBe(0);
    expect(readFileSync(join(out, "log.access.spin30"), "utf8")).toBe("https://relay.example.org/session/spin30-log\n");
    const token = readFileSync(join(out, "log.token.spin31"), "utf8").trim();
    const claims = decode(token);
    const reference = decode(practableRelayToken({ secret: LAB_SECRET, topic: "spin31-log", audience: "https://relay.example.org", lifetime: 31_536_000, now: claims.iat as number + 1 }));
    // Same claims, same order, same values.
    expect(Object.keys(claims)).toEqual(Object.keys(reference));
    expect(claims).toEqual(reference);
    expect(claims.iat as number).toBeGreaterThanOrEqual(before - 1);
    // The header is golang-jwt's, and the signature is HMAC-SHA256 with the lab's secret: a practable relay takes it.
    const [h, p, sig] = token.split(".");
    expect(JSON.parse(Buffer.from(h!, "base64url").toString())).toEqual({ alg: "HS256", typ: "JWT" });
    expect(createHmac("sha256", LAB_SECRET).update(`${h}.${p}`).digest("base64url")).toBe(sig!);
    // And this box takes it too (audience set to what the files name).
    relay.store.update({ public_url: "https://relay.example.org" });
    expect((await access(relay, "spin31-log", token)).status).toBe(200);
    const empty = tempDir();
    dirs.push(empty);
    const missing = await cli(["token", "--relay-secret", "--stream", "x", "--data-dir", empty.dir]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no practable relay secret is set");
  });

  it("takes the secret from SWITCHYARD_RELAY_SECRET over the stored one, and never prints it", async () => {
    const tmp = tempDir();
    dirs.push(tmp);
    const shown = await cli(["secret", "show", "--data-dir", tmp.dir], "", { SWITCHYARD_RELAY_SECRET: "from-the-environment" });
    expect(shown.stdout).toMatch(/^set \(from SWITCHYARD_RELAY_SECRET\), fingerprint [0-9a-f]{12}\n$/);
    expect(shown.stdout).not.toContain("from-the-environment");
    const short = await cli(["secret", "set", "--stdin", "--data-dir", tmp.dir], "abc\n");
    expect(short.code).toBe(2);
    expect(short.stderr).toContain("shorter than 8 characters");
    const noStdin = await cli(["secret", "set", "--data-dir", tmp.dir]);
    expect(noStdin.stderr).toContain("--stdin");
  });
});

describe("compat: practable's booking control", () => {
  it("denies a booking id: its relay session is dropped at once, new access is refused with 400, and allow undoes it (API, practable's /bids, CLI)", async () => {
    const relay = await relayWithLabSecret();
    const host = await startTestServer({}, { backoff: { baseMs: 200, maxMs: 400 } });
    servers.push(host);
    const token = practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 3600, bookingId: "booking-42" });
    await fetch(`${host.url}/api/destinations`, { method: "POST", body: JSON.stringify({ id: "0", stream: "spin30", destination: `${relay.url}/session/spin30-log`, token }) });
    await waitFor(() => relay.hub.stream("spin30-log")?.connections.size === 1, "the relay session");
    const listed = (await (await fetch(`${relay.url}/api/bookings`, { headers: relay.adminHeaders })).json()) as { connections: { stream: string; booking_id: string }[]; allowed: { booking_id: string }[] };
    expect(listed.connections).toContainEqual(expect.objectContaining({ stream: "spin30-log", booking_id: "booking-42" }));
    expect(listed.allowed.map((a) => a.booking_id)).toEqual(["booking-42"]);

    // The booking system holds a relay:admin token signed with the lab's secret, as for practable.
    const admin = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: relay.url, lifetime: 600, admin: true, read: false, write: false });
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const deny = await fetch(`${relay.url}/bids/deny?bid=booking-42&exp=${exp}`, { method: "POST", headers: { Authorization: admin } });
    expect(deny.status).toBe(204);
    await waitFor(async () => {
      const s = ((await (await fetch(`${host.url}/api/destinations/0`)).json()) as { status: { last_close_code: number | null; last_error: string | null } }).status;
      return s.last_close_code === 1008 && String(s.last_error).includes("answered 400");
    }, "the session closed and re-access refused with 400");
    expect(relay.hub.stream("spin30-log")?.connections.size ?? 0).toBe(0);
    const refused = await access(relay, "spin30-log", token);
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ code: 400, message: "bookingID has been deny-listed, probably because the session was cancelled" });
    expect(await (await fetch(`${relay.url}/bids/deny`, { headers: { Authorization: admin } })).json()).toEqual({ booking_ids: ["booking-42"] });
    // Without relay:admin (a device token), /bids is refused.
    const device = practableRelayToken({ secret: LAB_SECRET, topic: "spin30-log", audience: relay.url, lifetime: 600 });
    const notAdmin = await relay.app.request("/bids/deny", { headers: { Authorization: device } }, { server: { requestIP: () => ({ address: "10.0.0.9", port: 1, family: "IPv4" as const }) } });
    expect(notAdmin.status).toBe(401);

    // The CLI, as on the box: list, then allow.
    const list = await cli(["booking", "list", "--url", relay.url, "--data-dir", relay.dataDir]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("denied:\n  booking-42  until ");
    const allow = await cli(["booking", "allow", "booking-42", "--for", "1h", "--url", relay.url, "--data-dir", relay.dataDir]);
    expect(allow.code).toBe(0);
    expect(allow.stdout).toMatch(/^allowed booking-42 until /);
    await waitFor(() => relay.hub.stream("spin30-log")?.connections.size === 1, "the session back after allow", 15_000);
    const denyCli = await cli(["booking", "deny", "booking-42", "--url", relay.url, "--data-dir", relay.dataDir]);
    expect(denyCli.stdout).toMatch(/^denied booking-42 until .*; closed 1 connection\n$/);
    const bad = await fetch(`${relay.url}/bids/deny?bid=x&exp=5`, { method: "POST", headers: { Authorization: admin } });
    expect(bad.status).toBe(400);
  });

  it("a denied booking's token is refused on /ws and the HTTP stream routes too, and its /ws connections and event streams are closed", async () => {
    const relay = await relayWithLabSecret({ access: "token" });
    const token = practableRelayToken({ secret: LAB_SECRET, topic: "spin9", audience: relay.url, lifetime: 3600, bookingId: "booking-ws" });
    const held = await connect(relay.wsUrl("spin9", `token=${token}`));
    await waitFor(() => relay.hub.stream("spin9")?.connections.size === 1, "the booking's /ws connection");
    // The booking's server-sent event streams too: the stream's events, and the streams list's.
    const events = await fetch(`${relay.url}/api/streams/spin9/events?after_seq=0`, { headers: { Authorization: `Bearer ${token}` } });
    expect(events.status).toBe(200);
    const listToken = practableRelayToken({ secret: LAB_SECRET, topic: "$streams", audience: relay.url, lifetime: 3600, bookingId: "booking-ws" });
    const list = await fetch(`${relay.url}/api/events`, { headers: { Authorization: `Bearer ${listToken}` } });
    expect(list.status).toBe(200);
    const admin = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: relay.url, lifetime: 600, admin: true, read: false, write: false });
    const deny = await fetch(`${relay.url}/api/bookings/deny`, { method: "POST", headers: { Authorization: admin, "content-type": "application/json" }, body: JSON.stringify({ booking_id: "booking-ws" }) });
    expect(deny.status).toBe(200);
    expect(((await deny.json()) as { closed: number }).closed).toBe(3);
    // Both event streams end (their bodies finish), the stream's saying why.
    expect(await events.text()).toContain('event: error\ndata: {"error":"booking booking-ws was cancelled"}');
    expect(await list.text()).toContain("event: snapshot");
    const closed = await held.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain("booking booking-ws was cancelled");

    const again = await connect(relay.wsUrl("spin9", `token=${token}`));
    expect(await again.closed).toEqual({ code: 1008, reason: "booking id has been deny-listed, probably because the session was cancelled" });
    const auth = { Authorization: `Bearer ${token}` };
    const publish = await fetch(`${relay.url}/api/streams/spin9/messages`, { method: "POST", headers: auth, body: "x" });
    expect(publish.status).toBe(403);
    expect(await publish.text()).toContain("deny-listed");
    expect((await fetch(`${relay.url}/api/streams/spin9/messages`, { headers: auth })).status).toBe(403);
    expect((await fetch(`${relay.url}/api/streams`, { headers: auth })).status).toBe(403);
    expect((await access(relay, "spin9", token)).status).toBe(400);
    // Another booking's token for the same topic is unaffected.
    const other = practableRelayToken({ secret: LAB_SECRET, topic: "spin9", audience: relay.url, lifetime: 3600, bookingId: "booking-other" });
    expect((await fetch(`${relay.url}/api/streams/spin9/messages`, { method: "POST", headers: { Authorization: `Bearer ${other}` }, body: "y" })).status).toBe(200);
  });

  it("a far-future exp is refused with 400 on deny/allow, and a connected token with a far-future exp breaks no booking view", async () => {
    const relay = await relayWithLabSecret();
    const admin = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: relay.url, lifetime: 600, admin: true, read: false, write: false });
    const farBids = await fetch(`${relay.url}/bids/deny?bid=b1&exp=99999999999999`, { method: "POST", headers: { Authorization: admin } });
    expect(farBids.status).toBe(400);
    expect(((await farBids.json()) as { detail: string }).detail).toContain("allowed: a future time up to 253402300799 (9999-12-31T23:59:59Z)");
    const farApi = await fetch(`${relay.url}/api/bookings/deny`, { method: "POST", headers: { ...relay.adminHeaders, "content-type": "application/json" }, body: JSON.stringify({ booking_id: "b2", exp: 99999999999999 }) });
    expect(farApi.status).toBe(400);
    expect(await farApi.text()).toContain("is after 9999-12-31T23:59:59Z");
    expect(await (await fetch(`${relay.url}/bids/deny`, { headers: { Authorization: admin } })).json()).toEqual({ booking_ids: [] });

    // A device token signed with an exp far past year 9999, as a --ttl 999999999y used to make: on /session (the allow list) and /ws.
    const now = Math.floor(Date.now() / 1000);
    const far = practableRelayToken({ secret: LAB_SECRET, topic: "spin7", audience: relay.url, lifetime: 99999999999999 - now, bookingId: "b3" });
    expect(decode(far).exp as number).toBeGreaterThan(99_999_999_999_000);
    const res = await access(relay, "spin7", far);
    expect(res.status).toBe(200);
    const session = await connect(((await res.json()) as { uri: string }).uri);
    const direct = await connect(relay.wsUrl("spin7", `token=${far}`));
    await waitFor(() => relay.hub.stream("spin7")?.connections.size === 2, "both connections");
    const status = await fetch(`${relay.url}/status`, { headers: relay.adminHeaders });
    expect(status.status).toBe(200);
    expect(((await status.json()) as { expires: string }[]).map((c) => c.expires)).toEqual(["9999-12-31T23:59:59.000Z", "9999-12-31T23:59:59.000Z"]);
    const listed = await fetch(`${relay.url}/api/bookings`, { headers: relay.adminHeaders });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { allowed: unknown[] }).allowed).toEqual([{ booking_id: "b3", exp: 253402300799 }]);
    const { signIn } = await import("../support/admin.ts");
    const page = await fetch(`${relay.url}/admin/bookings`, { headers: { cookie: await signIn(relay) } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("b3");

    // Denying it closes both connections.
    const deny = await fetch(`${relay.url}/api/bookings/deny`, { method: "POST", headers: { ...relay.adminHeaders, "content-type": "application/json" }, body: JSON.stringify({ booking_id: "b3" }) });
    expect(deny.status).toBe(200);
    expect(((await deny.json()) as { closed: number }).closed).toBe(2);
    expect((await session.closed).code).toBe(1008);
    expect((await direct.closed).code).toBe(1008);

    // The CLI no longer signs such a token.
    const minted = await cli(["token", "--stream", "spin7", "--ttl", "999999999y", "--data-dir", relay.dataDir]);
    expect(minted.code).not.toBe(0);
    expect(minted.stderr).toContain("at most 100y");
    const batch = await cli(["token", "--prefix", "spin", "--from", "1", "--to", "2", "--kind", "log", "--access-url", relay.url, "--out", join(relay.dataDir, "devices"), "--ttl", "999999999y", "--data-dir", relay.dataDir]);
    expect(batch.code).not.toBe(0);
    expect(batch.stderr).toContain("at most 100y");
  });

  it("takes relay:admin only from a token whose audience names this relay, and relay:stats for GET /status", async () => {
    const relay = await relayWithLabSecret();
    const ours = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: relay.url, lifetime: 600, admin: true, read: false, write: false });
    // Another relay of the lab shares the secret: its booking token must not control this box.
    const theirs = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: "https://other-relay.example.org", lifetime: 600, admin: true, read: false, write: false });
    const now = Math.floor(Date.now() / 1000);
    const noAud = signRaw({ alg: "HS256", typ: "JWT" }, { topic: "", prefix: "session", scopes: ["relay:admin"], exp: now + 600, nbf: now - 1, iat: now - 1 }, LAB_SECRET);
    for (const [name, token] of [["another relay's", theirs], ["no audience", noAud]] as const) {
      const deny = await fetch(`${relay.url}/bids/deny?bid=b9&exp=${now + 3600}`, { method: "POST", headers: { Authorization: token } });
      expect([name, deny.status]).toEqual([name, 401]);
      expect([name, (await fetch(`${relay.url}/api/bookings`, { headers: { Authorization: `Bearer ${token}` } })).status]).toEqual([name, 401]);
      expect([name, (await fetch(`${relay.url}/status`, { headers: { Authorization: token } })).status]).toEqual([name, 401]);
    }
    expect(await (await fetch(`${relay.url}/bids/deny`, { headers: { Authorization: ours } })).json()).toEqual({ booking_ids: [] });
    expect((await fetch(`${relay.url}/bids/deny?bid=b9&exp=${now + 3600}`, { method: "POST", headers: { Authorization: ours } })).status).toBe(204);
    expect((await fetch(`${relay.url}/status`, { headers: { Authorization: ours } })).status).toBe(200);

    // practable's /status scope: relay:stats reads the connections, and controls nothing.
    const stats = practableRelayToken({ secret: LAB_SECRET, topic: "", audience: relay.url, lifetime: 600, read: false, write: false, other: "relay:stats" });
    const status = await fetch(`${relay.url}/status`, { headers: { Authorization: stats } });
    expect(status.status).toBe(200);
    expect(Array.isArray(await status.json())).toBe(true);
    expect((await fetch(`${relay.url}/bids/deny?bid=b10&exp=${now + 3600}`, { method: "POST", headers: { Authorization: stats } })).status).toBe(401);
    expect((await fetch(`${relay.url}/api/bookings`, { headers: { Authorization: stats } })).status).toBe(401);
  });
});

describe("compat: the Relay admin page and the Tokens page", () => {
  it("imports the secret (never shown again), signs a device range with it, and denies a booking from the page", async () => {
    const { signIn, asAdmin } = await import("../support/admin.ts");
    const srv = await startTestServer();
    servers.push(srv);
    const admin = asAdmin(srv, await signIn(srv));
    const page = await (await admin.get("/admin/bookings")).text();
    expect(page).toContain("Not set.");
    // Signing with the relay secret before it is imported is refused with the reason.
    const early = await admin.post("/admin/tokens", { prefix: "spin", from: "30", to: "30", kind: "log", access_url: "https://relay.example.org", scopes: ["read", "write"], ttl: "1d", sign_with: "relay" });
    expect(early.status).toBe(422);
    expect(await early.text()).toContain("no practable relay secret is imported");
    const bad = await admin.post("/admin/bookings/secret", { action: "set", secret: "short" });
    expect(bad.status).toBe(422);
    const set = await admin.post("/admin/bookings/secret", { action: "set", secret: LAB_SECRET });
    const setText = await set.text();
    expect(setText).toMatch(/Imported \(fingerprint [0-9a-f]{12}\)/);
    expect(setText).not.toContain(LAB_SECRET);
    expect(await (await admin.get("/admin/bookings")).text()).not.toContain(LAB_SECRET);
    const made = await (await admin.post("/admin/tokens", { prefix: "spin", from: "30", to: "30", kind: "log", access_url: "https://relay.example.org", scopes: ["read", "write"], ttl: "1d", sign_with: "relay", booking_id: "b-7" })).text();
    const token = /<td class="secret">([^<]+)<\/td>/.exec(made)![1]!;
    const [h, p, sig] = token.split(".");
    expect(createHmac("sha256", LAB_SECRET).update(`${h}.${p}`).digest("base64url")).toBe(sig!);
    expect(decode(token)).toMatchObject({ booking_id: "b-7", topic: "spin30-log", scopes: ["write", "read"], aud: ["https://relay.example.org"] });
    // Deny from the page: the relay session with that booking id is closed.
    srv.store.update({ public_url: "https://relay.example.org" });
    const res = await access(srv, "spin30-log", token);
    const session = await connect(((await res.json()) as { uri: string }).uri.replace("wss://relay.example.org", srv.url.replace("http", "ws")));
    expect(await (await admin.get("/admin/bookings")).text()).toContain("<td>b-7</td>");
    const denied = await (await admin.post("/admin/bookings", { action: "deny", booking_id: "b-7", hours: "2" })).text();
    expect(denied).toContain("Denied b-7 until");
    expect(denied).toContain("closed 1 connection(s)");
    expect((await session.closed).code).toBe(1008);
  });
});
