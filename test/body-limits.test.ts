import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { rawRequest, startServeProcess, streamBody, type ServeProcess } from "./support/raw-http.ts";
import { tempDir } from "./support/server.ts";

const MB = 1024 * 1024;
/** Generous: the attack took the server to 1.3-1.8 GB; a refused body must not grow it by more than this. */
const RSS_GROWTH_LIMIT = 150 * MB;

/** Streams a body while sampling the server's RSS; returns the answer and the peak growth over the RSS before. */
async function attack(srv: ServeProcess, head: string, total: number, chunked: boolean, opts?: Parameters<typeof streamBody>[4]) {
  const before = srv.rss();
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, srv.rss()); }, 20);
  try {
    const answer = await streamBody(srv.port, head, total, chunked, opts);
    peak = Math.max(peak, srv.rss());
    return { ...answer, growth: peak - before };
  } finally {
    clearInterval(sampler);
  }
}

describe("request body limits (a real server in its own process, real 300 MB bodies)", () => {
  const tmp = tempDir();
  let srv: ServeProcess;
  beforeAll(async () => {
    srv = await startServeProcess(tmp.dir);
    // Warm up so the RSS before an attack is the server's settled size.
    for (let i = 0; i < 3; i++) await rawRequest(srv.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  });
  afterAll(async () => {
    await srv.stop();
    tmp.remove();
  });

  const healthy = async () => expect((await rawRequest(srv.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")).status).toBe(200);

  it("refuses a 300 MB sign-in form with Content-Length before reading it (413 naming the limit)", async () => {
    const r = await attack(srv, `POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${300 * MB}\r\n\r\n`, 300 * MB, false);
    expect(r.status).toBe(413);
    expect(r.body).toContain("limit of 8192 bytes (the sign-in form)");
    expect(r.head.toLowerCase()).toContain("connection: close");
    expect(r.sent).toBeLessThan(300 * MB);
    expect(r.growth).toBeLessThan(RSS_GROWTH_LIMIT);
    await healthy();
  }, 180_000);

  it("refuses a chunked 300 MB sign-in form once it passes the limit", async () => {
    const r = await attack(srv, "POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n", 300 * MB, true);
    expect(r.status).toBe(413);
    expect(r.body).toContain("limit of 8192 bytes (the sign-in form)");
    expect(r.growth).toBeLessThan(RSS_GROWTH_LIMIT);
    await healthy();
  }, 180_000);

  it("refuses a 300 MB JSON body of the API before reading it", async () => {
    const r = await attack(srv, `PATCH /api/settings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${300 * MB}\r\n\r\n`, 300 * MB, false);
    expect(r.status).toBe(413);
    expect(r.body).toContain(`limit of ${MB} bytes (JSON bodies of the API)`);
    expect(r.growth).toBeLessThan(RSS_GROWTH_LIMIT);
    await healthy();
  }, 180_000);

  it("refuses a chunked 300 MB message at max_message_bytes while reading it", async () => {
    const r = await attack(srv, "POST /api/streams/big/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n", 300 * MB, true, { pauseAfter: 2 * MB });
    expect(r.status).toBe(413);
    expect(r.body).toContain(`limit of ${MB} bytes (setting max_message_bytes)`);
    expect(r.growth).toBeLessThan(RSS_GROWTH_LIMIT);
    await healthy();
  }, 180_000);

  it("takes a long /ts/{stream} body in full, never holding it whole", async () => {
    const total = 64 * MB;
    const r = await attack(srv, "POST /ts/video0 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", total, true, { answerMs: 0 });
    expect(r.status).toBe(200);
    const reply = JSON.parse(r.body) as { stream: string; bytes: number; messages: number };
    expect(reply.stream).toBe("video0");
    expect(reply.bytes).toBe(total);
    expect(r.growth).toBeLessThan(RSS_GROWTH_LIMIT);
  }, 180_000);
});
