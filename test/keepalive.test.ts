import { afterEach, describe, expect, it, setDefaultTimeout } from "bun:test";
import { connect } from "./support/client.ts";
import { RawWebSocket } from "./support/raw-socket.ts";
import { startTestServer, waitFor, type TestServer } from "./support/server.ts";

// The shortest keepalive is 8 s; the test watches for longer than that.
setDefaultTimeout(60_000);

let srv: TestServer;
afterEach(async () => { await srv.close(); });

describe("websocket close codes", () => {
  it("sends a close frame (1001, with the reason) to a client that answers no ping, and keeps a quiet client that does", async () => {
    srv = await startTestServer({ keepalive_seconds: 8 });
    const opened = Date.now();
    // A raw socket never answers pings; a real websocket client answers them by itself.
    const deaf = await RawWebSocket.open(srv.port, "/ws/ka");
    const quiet = await connect(srv.wsUrl("ka"));
    const closed = await deaf.readUntilClose(30_000);
    expect(closed.code).toBe(1001);
    expect(closed.reason).toMatch(/^keepalive timeout: nothing received for \d+ s, not even a pong$/);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(7000);
    // Past the keepalive and Bun's own idle timeout, the client that answers pings is still connected.
    await Bun.sleep(Math.max(0, 17_000 - (Date.now() - opened)));
    expect(quiet.ws.readyState).toBe(WebSocket.OPEN);
    quiet.ws.send("still here");
    await waitFor(() => srv.hub.stream("ka")?.messagesIn === 1, "the message from the quiet client");
    quiet.close();
    deaf.destroy();
  });

  it("closes with 1007 a client that sends a text frame that is not UTF-8", async () => {
    srv = await startTestServer();
    const raw = await RawWebSocket.open(srv.port, "/ws/utf8");
    // FIN + text, masked, one byte 0xff (never valid UTF-8), mask key 0.
    raw.socket.write(Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0xff]));
    expect(await raw.readUntilClose(10_000)).toMatchObject({ code: 1007, reason: "Received invalid UTF-8" });
    raw.destroy();
  });
});
