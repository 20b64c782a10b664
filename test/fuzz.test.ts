import { afterAll, beforeAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import dgram from "node:dgram";
import net from "node:net";
import { join } from "node:path";
import { firstPassword } from "./support/admin.ts";
import { rawRequest, startServeProcess, type ServeProcess } from "./support/raw-http.ts";
import { freeUdpPort, startTestServer, tempDir } from "./support/server.ts";

/**
 * A bounded, deterministic fuzz run against a real `switchyard serve` process:
 * random and malformed methods, paths, percent-encodings, headers and bodies on
 * every route of the Hono app and the upgrade paths, random websocket frames on
 * upgraded sockets, random UDP datagrams. The server must stay up, never answer
 * 5xx or anything with source in it, never log an unhandled error, and keep its
 * memory bounded. SWITCHYARD_FUZZ_SEED replays another run.
 */

setDefaultTimeout(120_000);

const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20261201);
const HTTP_REQUESTS = 1200;
const WS_SESSIONS = 120;
const DATAGRAMS = 3000;
/** Generous: the server settles near 100 MB; a leak or a buffered body would pass this. */
const RSS_GROWTH_LIMIT = 256 * 1024 * 1024;

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next, int,
    chance: (p: number) => next() < p,
    pick: <T,>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes: (n: number) => Uint8Array.from({ length: n }, () => int(256)),
  };
}
type Rng = ReturnType<typeof prng>;

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] as const;
const ODD_METHODS = ["PROPFIND", "GeT", "TRACE", "CONNECT", "X"];
const PARAMS = ["token", "code", "since", "limit", "before", "after", "seq", "sql", "format", "next", "from", "to", "stream", "id", "q"];

/** A path segment: mostly plausible, often hostile. */
function segment(r: Rng): string {
  switch (r.int(12)) {
    case 0: return "%ZZ";
    case 1: return r.pick(["%E0%A4", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%", "%%", "%0", "%00", "%FF%FE"]);
    case 2: return "a".repeat(r.pick([200, 2000, 9000]));
    case 3: return [...r.bytes(1 + r.int(12))].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
    case 4: return r.pick(["..", ".", "", "_streams", "all", "messages", "%2F", "a%2Fb", "*", "~", "$", ";", "@"]);
    case 5: return encodeURIComponent(r.pick(["ünïcödé", "流", "😀", "a b", "<script>", "'\"", "\\"]));
    default: return r.pick(["spin30", "video0", "lab", "rig-1", "s", "x", "fuzz"]) + (r.chance(0.3) ? String(r.int(100)) : "");
  }
}

/** A query parameter value. */
function value(r: Rng): string {
  switch (r.int(8)) {
    case 0: return "%ZZ";
    case 1: return String(r.pick([-1, 0, 1, 1e309, 2 ** 53, -(2 ** 63), 3.5]));
    case 2: return "x".repeat(r.pick([100, 3000]));
    case 3: return r.pick(["eyJhbGciOiJIUzI1NiJ9.e30.x", "a.b.c", "", "null", "[]", "{}"]);
    case 4: return encodeURIComponent(r.pick(["SELECT 1", "SELECT * FROM read_csv('/etc/passwd')", "'; DROP TABLE x; --", "json", "parquet", "csv"]));
    default: return segment(r);
  }
}

/** A random JSON value, sometimes deep, sometimes with prototype keys. */
function json(r: Rng, depth = 0): unknown {
  const k = r.int(depth > 3 ? 5 : 8);
  if (k === 0) return r.pick([null, true, false]);
  if (k === 1) return r.pick([0, -1, 1e308, 2 ** 64, 0.5, 1.5e-300]);
  if (k === 2) return r.pick(["", "x", "ws://127.0.0.1:1/ws/x", "open", "token", "spin*", "%ZZ", "a".repeat(500)]);
  if (k === 3) return r.pick(["read", "write", "admin"]);
  if (k === 4) return segment(r);
  if (k === 5) return Array.from({ length: r.int(4) }, () => json(r, depth + 1));
  const keys = ["id", "stream", "destination", "token", "sql", "format", "target", "text", "webhook_url", "feeds", "access", "max_connections", "udp_format", "__proto__", "constructor", "toString", "range", "targets"];
  return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.pick(keys), json(r, depth + 1)]));
}

/** A request body and its content type. */
function body(r: Rng): { bytes: Uint8Array; type?: string } {
  const enc = new TextEncoder();
  switch (r.int(9)) {
    case 0: return { bytes: new Uint8Array(0) };
    case 1: return { bytes: r.bytes(r.int(4000)), type: r.pick([undefined, "application/octet-stream", "text/plain", "application/json"]) };
    case 2: {
      // JSON, or JSON with prototype keys written out (JSON.stringify drops __proto__ as a key).
      const text = r.chance(0.3) ? `{"__proto__": ${JSON.stringify(json(r))}, "constructor": {"prototype": {"x": 1}}}` : JSON.stringify(json(r));
      return { bytes: enc.encode(text), type: "application/json" };
    }
    case 3: {
      // Deep nesting: cut off, or valid and deep enough to overflow a recursive walker.
      const n = r.pick([10, 5000, 100_000]);
      const deep = r.pick(["[".repeat(n), "[".repeat(n) + "]".repeat(n), `{"targets":${"[".repeat(n)}${"]".repeat(n)},"stream":${'{"a":'.repeat(n)}1${"}".repeat(n)}}`]);
      return { bytes: enc.encode(deep), type: "application/json" };
    }
    case 4: {
      const names = ["password", "next", "sql", "format", "stream", "data", "id", "rules", "scopes", "prefix", "from", "to", "kind", "ttl", "url", "access", "max_connections", "destination", "token", "__proto__"];
      const form = Array.from({ length: r.int(6) }, () => `${r.pick(names)}=${value(r)}`).join("&");
      return { bytes: enc.encode(form), type: "application/x-www-form-urlencoded" };
    }
    case 5: {
      const b = r.pick(["XyZ", "", "a".repeat(80)]);
      const text = r.chance(0.5) ? `--${b}\r\nContent-Disposition: form-data; name="${r.pick(["password", "sql", "data"])}"\r\n\r\n${value(r)}\r\n--${b}--\r\n` : `--${b}\r\ngarbage`;
      return { bytes: enc.encode(text), type: `multipart/form-data; boundary=${b}` };
    }
    case 6: return { bytes: enc.encode(String(r.pick(["SELECT 1", "x".repeat(70_000)]))), type: "text/plain" };
    default: return { bytes: r.bytes(r.int(64)), type: r.pick(["application/json", "text/plain; charset=utf-8", "application/x-ndjson", "bogus/type; ;;"]) };
  }
}

/** Extra headers, each sometimes hostile. */
function headers(r: Rng, port: number, cookie: string): string[] {
  const out: string[] = [];
  const host = r.chance(0.9) ? `127.0.0.1:${port}` : r.pick(["a#b", "[::1", "x:99999", "", "a b", "evil.example", "127.0.0.1:%ZZ", "h".repeat(3000), "localhost"]);
  out.push(`Host: ${host}`);
  if (r.chance(0.4)) out.push(`Cookie: ${r.chance(0.8) ? cookie : r.pick(["switchyard_session=%ZZ", "switchyard_session=", "=;;=", "a=b".repeat(500)])}`);
  if (r.chance(0.2)) out.push(`Authorization: ${r.pick(["Bearer x.y.z", "Bearer ", "Basic Zm9vOmJhcg==", "eyJhbGciOiJub25lIn0.e30.", "%ZZ"])}`);
  if (r.chance(0.2)) out.push(`Origin: ${r.pick([`http://127.0.0.1:${port}`, "http://evil.example", "null", "%ZZ", "http://[::1"])}`);
  if (r.chance(0.1)) out.push(`X-Forwarded-For: ${r.pick(["1.2.3.4", "garbage", "127.0.0.1, 10.0.0.1", ""])}`);
  if (r.chance(0.1)) out.push(`Sec-WebSocket-Protocol: ${r.pick(["token.x", "null", "switchyard, token.a.b.c", ",,,"])}`);
  if (r.chance(0.1)) out.push(`HX-Request: ${r.pick(["true", "false", "%ZZ"])}`);
  if (r.chance(0.1)) out.push(`Referer: ${r.pick(["http://127.0.0.1/admin", "%ZZ", "http://[bad", "/relative"])}`);
  if (r.chance(0.1)) out.push(`Accept: ${r.pick(["text/event-stream", "*/*", "text/html", "application/json;q=%ZZ"])}`);
  if (r.chance(0.05)) out.push(`X-Junk: ${"j".repeat(r.pick([10, 6000]))}`);
  return out;
}

/** A whole request as bytes: method, path with query, headers, framed body (sometimes misframed). */
function request(r: Rng, routes: { method: string; path: string }[], port: number, cookie: string): { bytes: Buffer; label: string; broken?: boolean } {
  if (r.chance(0.04)) {
    // Not HTTP as the parser knows it: garbage, broken request lines and headers.
    const broken = r.pick([
      () => Buffer.from(r.bytes(1 + r.int(600))),
      () => Buffer.from("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
      () => Buffer.from("GET /\u0000x HTTP/1.1\r\nHost: x\r\n\r\n", "latin1"),
      () => Buffer.from("GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n"),
      () => Buffer.from(`GET /${"a".repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
      () => Buffer.from(`GET /healthz HTTP/1.1\r\n${"X-A: b\r\n".repeat(500)}\r\n`),
      () => Buffer.from("POST /api/streams/s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"),
      () => Buffer.from("POST /api/streams/s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      () => Buffer.from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n X-Folded: continuation\r\n\r\n"),
    ])();
    return { bytes: broken, label: `broken: ${JSON.stringify(broken.subarray(0, 60).toString("latin1"))}`, broken: true };
  }
  const route = r.pick(routes);
  let method = route.method === "ALL" ? r.pick(METHODS) : route.method;
  if (r.chance(0.15)) method = r.pick(METHODS);
  if (r.chance(0.02)) method = r.pick(ODD_METHODS);
  let path = route.path.replace(/\*|:\w+/g, () => Array.from({ length: 1 + r.int(2) }, () => segment(r)).join("/"));
  if (route.path.endsWith("*") && r.chance(0.3)) path += "/messages";
  if (r.chance(0.05)) path = "/" + Array.from({ length: 1 + r.int(4) }, () => segment(r)).join("/");
  if (r.chance(0.4)) path += "?" + Array.from({ length: 1 + r.int(3) }, () => `${r.pick(PARAMS)}=${value(r)}`).join("&");
  const b = body(r);
  const lines = [`${method} ${path} HTTP/1.1`, ...headers(r, port, cookie), "Connection: close"];
  if (b.type) lines.push(`Content-Type: ${b.type}`);
  const framing = r.int(20);
  let payload: Buffer = Buffer.from(b.bytes);
  if (framing < 14) {
    if (b.bytes.length > 0 || method !== "GET") lines.push(`Content-Length: ${b.bytes.length}`);
  } else if (framing < 17) {
    lines.push("Transfer-Encoding: chunked");
    const size = r.chance(0.8) ? payload.length.toString(16) : r.pick(["zz", "-1", "ffffffffffffffff", ""]);
    payload = Buffer.concat([Buffer.from(`${size}\r\n`), payload, Buffer.from("\r\n0\r\n\r\n")]);
  } else if (framing === 17) {
    lines.push(`Content-Length: ${r.pick(["abc", "-1", "1e3", "99999999999999999999"])}`);
  } else if (framing === 18) {
    lines.push(`Content-Length: ${Math.max(0, b.bytes.length - 3)}`); // the rest reads as the next request
  } else {
    lines.push(`Content-Length: ${b.bytes.length + 10}`); // the server waits for bytes that never come
  }
  return { bytes: Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), payload]), label: `${method} ${path.slice(0, 120)}` };
}

/** What no answer may ever carry: Bun's development page, a stack frame, a source path. */
// A stack frame names a function and then a place ("at fn (/path/file.ts:1:2)", "(native)"):
// prose such as a setting's "at most (…)" is not one.
const SOURCE = /__bunfallback|\bat [\w.<>$]+ \((?:\/|file:|native\b|<anonymous>)|\.tsx?:\d+:\d+|node_modules|\/work\/|\bapp\/[\w/-]+\.tsx?\b/;

/** A websocket frame as a client would send it (masked unless told otherwise), with knobs to break it. */
function frame(r: Rng): Buffer {
  const opcode = r.chance(0.7) ? r.pick([0x1, 0x2, 0x0, 0x8, 0x9, 0xa]) : r.int(16);
  const fin = r.chance(0.8);
  let payload: Buffer;
  switch (r.int(6)) {
    case 0: payload = Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80, 0xff]); break; // invalid UTF-8
    case 1: payload = Buffer.alloc(r.pick([126, 200, 70_000]), 0x61); break;
    case 2: payload = Buffer.from(JSON.stringify(json(r))); break;
    case 3: payload = Buffer.concat([Buffer.from([r.int(256), r.int(256)]), Buffer.from(r.bytes(r.int(140)))]); break; // close codes, long reasons
    default: payload = Buffer.from(r.bytes(r.int(300)));
  }
  const masked = r.chance(0.9);
  let len = payload.length;
  // Sometimes a length far beyond what is sent or allowed (up to 2^62).
  const lie = r.chance(0.08);
  if (lie) len = r.pick([2 ** 31, 2 ** 40, 2 ** 62, 3 * 1024 * 1024]);
  const head: number[] = [(fin ? 0x80 : 0) | (r.chance(0.05) ? 0x70 : 0) | opcode];
  const maskBit = masked ? 0x80 : 0;
  const ext = Buffer.alloc(8);
  if (len < 126) head.push(maskBit | len);
  else if (len < 65536) { head.push(maskBit | 126, len >> 8, len & 0xff); }
  else { head.push(maskBit | 127); ext.writeBigUInt64BE(BigInt(len)); head.push(...ext); }
  const key = Buffer.from(r.bytes(4));
  const body = masked ? Buffer.from(payload.map((b, i) => b ^ key[i % 4]!)) : payload;
  return Buffer.concat([Buffer.from(head), masked ? key : Buffer.alloc(0), body]);
}

/** Upgrades a raw socket on `path`, sends `frames` random frames, and closes after a short read. */
function websocketSession(r: Rng, port: number): Promise<void> {
  const path = r.pick([
    () => `/ws/${segment(r)}`,
    () => `/ws/fuzz${r.int(5)}`,
    () => "/ws/_streams",
    () => `/session/${segment(r)}?code=${value(r)}`,
    () => `/ws/fuzz?token=${value(r)}`,
  ])();
  const frames = Array.from({ length: 1 + r.int(12) }, () => frame(r));
  const protocol = r.chance(0.3) ? `Sec-WebSocket-Protocol: ${r.pick(["null", "switchyard, token.a.b.c", "token.x"])}\r\n` : "";
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const end = () => { s.destroy(); resolve(); };
    const timer = setTimeout(end, 1500);
    s.on("error", () => {});
    s.on("close", () => { clearTimeout(timer); resolve(); });
    let upgraded = false;
    s.on("data", () => {
      if (upgraded) return;
      upgraded = true;
      for (const f of frames) if (!s.destroyed) s.write(f);
    });
    s.once("connect", () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${protocol}\r\n`));
  });
}

/** A random UDP datagram: bytes, JSON (good and bad), lines. */
function datagram(r: Rng): Buffer {
  switch (r.int(5)) {
    case 0: return Buffer.from(r.bytes(r.int(1400)));
    case 1: return Buffer.from(JSON.stringify({ stream: segment(r), v: json(r) }));
    case 2: return Buffer.from(JSON.stringify(json(r)));
    case 3: return Buffer.from(`${segment(r)} ${value(r)}\n`.repeat(1 + r.int(5)));
    default: return Buffer.from(r.chance(0.5) ? "{\"stream\":" : "\u0000\uffff".repeat(r.int(200)));
  }
}

/** Runs `tasks` with at most `n` at once. */
async function pool<T>(n: number, items: T[], run: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await run(items[i++]!);
  }));
}

describe(`fuzz: random requests, websocket frames and datagrams (seed ${SEED})`, () => {
  const tmp = tempDir();
  let srv: ServeProcess;
  let routes: { method: string; path: string }[] = [];
  let cookie = "";
  let rssBefore = 0;

  beforeAll(async () => {
    // The routes come from the Hono app itself, plus the upgrade paths served before it.
    const inProcess = await startTestServer();
    const seen = new Set<string>();
    for (const r of inProcess.app.routes) {
      const k = `${r.method} ${r.path}`;
      if (!seen.has(k)) { seen.add(k); routes.push({ method: r.method, path: r.path }); }
    }
    await inProcess.close();
    routes.push({ method: "GET", path: "/ws/*" }, { method: "GET", path: "/session/*" }, { method: "GET", path: "/nowhere/*" });

    srv = await startServeProcess(join(tmp.dir, "data"), { udpPort: await freeUdpPort() });
    const password = firstPassword(join(tmp.dir, "data"));
    const login = await rawRequest(srv.port, `POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nOrigin: http://127.0.0.1:${srv.port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${9 + password.length}\r\nConnection: close\r\n\r\npassword=${password}`);
    expect(login.status).toBe(303);
    cookie = /set-cookie: ([^;\r\n]+)/i.exec(login.head)![1]!;
    for (let i = 0; i < 5; i++) await rawRequest(srv.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    rssBefore = srv.rss();
  });

  afterAll(async () => {
    await srv?.stop();
    tmp.remove();
  });

  const healthy = async () => {
    const r = await rawRequest(srv.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(200);
  };

  it("enumerates the app's routes", () => {
    expect(routes.length).toBeGreaterThan(50);
    expect(routes.some((r) => r.path === "/admin/login" && r.method === "POST")).toBe(true);
  });

  it(`${HTTP_REQUESTS} random HTTP requests on every route: never 5xx, never source`, async () => {
    const r = prng(SEED);
    const reqs = Array.from({ length: HTTP_REQUESTS }, () => request(r, routes, srv.port, cookie));
    const bad: string[] = [];
    const statuses = new Map<number, number>();
    let done = 0;
    await pool(12, reqs, async (q) => {
      const a = await rawRequest(srv.port, q.bytes, 1500);
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      // 5xx allowed: the SQL engine's designed "busy, try again" when the fuzz runs more queries at once than it takes.
      const busy = a.status === 503 && a.body.includes("queries are running already");
      // Bun's HTTP parser answers what is not an HTTP/1.x request line with an empty 505, before any code of ours runs.
      const notHttp = q.broken && a.status === 505 && a.body === "";
      if (a.status >= 500 && !busy && !notHttp) bad.push(`${a.status} for ${q.label}: ${a.body.slice(0, 200)}`);
      if (SOURCE.test(a.raw)) bad.push(`source in the answer to ${q.label}: ${SOURCE.exec(a.raw)![0]}`);
      if (++done % 200 === 0) await healthy();
    });
    if (process.env.SWITCHYARD_FUZZ_VERBOSE) console.log(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])));
    expect(bad).toEqual([]);
    // The run reached the routes, not only the request screen.
    for (const s of [200, 400, 404]) expect(statuses.get(s) ?? 0).toBeGreaterThan(0);
    await healthy();
  });

  it(`${WS_SESSIONS} websocket sessions of random frames (bad UTF-8, oversized, fragmented, unmasked)`, async () => {
    const r = prng(SEED + 1);
    await pool(8, Array.from({ length: WS_SESSIONS }, (_, i) => i), () => websocketSession(r, srv.port));
    await healthy();
  });

  it(`${DATAGRAMS} random UDP datagrams`, async () => {
    const r = prng(SEED + 2);
    const sock = dgram.createSocket("udp4");
    for (let i = 0; i < DATAGRAMS; i++) {
      await new Promise<void>((resolve) => sock.send(datagram(r), srv.udpPort, "127.0.0.1", () => resolve()));
    }
    sock.close();
    await healthy();
  });

  it("the server stayed up, logged no unhandled error and kept its memory bounded", async () => {
    await healthy();
    const log = srv.log();
    for (const failure of ["unhandled error", "websocket handler failed", "udp datagram handling failed", "message sink failed"]) expect(log).not.toContain(failure);
    expect(log).not.toMatch(/^\s+at /m);
    expect(log).not.toContain("__bunfallback");
    const growth = srv.rss() - rssBefore;
    if (process.env.SWITCHYARD_FUZZ_VERBOSE) console.log({ rss_before_mb: Math.round(rssBefore / 2 ** 20), growth_mb: Math.round(growth / 2 ** 20) });
    expect(growth).toBeLessThan(RSS_GROWTH_LIMIT);
  });
});
