import { describe, expect, it } from "bun:test";
import type { Clock } from "../app/core/clock.ts";
import { silentLogger, type Logger } from "../app/core/logger.ts";
import type { Message } from "../app/core/message.ts";
import { DEFAULT_SETTINGS, type Settings } from "../app/config/settings.ts";
import { Hub, PublishError } from "../app/hub/hub.ts";
import type { StreamEvent } from "../app/hub/stream-events.ts";
import { FakeFanOut } from "./support/fake-fanout.ts";

// The hub on its own, with a fake fan-out and a manual clock: backpressure, lag and drop
// accounting and stats in milliseconds. The same behaviour through real sockets is in
// hub-backpressure.test.ts and hub-fanout.test.ts.

const PAYLOAD = "p".repeat(1000);
const LIMIT = 4096;

/** A clock that moves only when told. */
function manualClock(startMs = 1_800_000_000_000): Clock & { advance(ms: number): void } {
  let ms = startMs;
  return { nowMillis: () => ms, nowMicros: () => ms * 1000, advance: (d) => { ms += d; } };
}

/** Lets the hub reach the end of the turn, where it delivers. */
const endOfTurn = () => new Promise<void>((r) => setImmediate(r));

function makeHub(patch: Partial<Settings> = {}, logger: Logger = silentLogger) {
  let settings: Settings = { ...DEFAULT_SETTINGS, backpressure_limit_bytes: LIMIT, ...patch };
  const clock = manualClock();
  const hub = new Hub({ settings: () => settings, clock, logger });
  const fanout = new FakeFanOut();
  hub.attachFanOut(fanout);
  return { hub, fanout, clock, set: (p: Partial<Settings>) => { settings = { ...settings, ...p }; } };
}

/** A hub with a fast and a stalled subscriber on stream "bp", under `policy`. */
function fastAndSlow(policy: Settings["backpressure_policy"]) {
  const h = makeHub({ backpressure_policy: policy });
  const fast = h.fanout.connection("bp");
  const slow = h.fanout.connection("bp", {}, true);
  h.hub.join(fast);
  h.hub.join(slow);
  return { ...h, fast, slow };
}

/** Publishes `n` numbered messages from UDP in one turn, then lets them be delivered. */
async function publishMany(hub: Hub, stream: string, n: number, from = 0) {
  for (let i = from; i < from + n; i++) hub.publish(stream, `${i}:${PAYLOAD}`, "udp:10.0.0.1:5000");
  await endOfTurn();
}

describe("hub backpressure (fake fan-out)", () => {
  it("drop: a subscriber over the limit is held off, every message it missed is counted, and settled when it catches up", async () => {
    const { hub, fanout, fast, slow } = fastAndSlow("drop");
    await publishMany(hub, "bp", 200);

    const s = hub.stream("bp")!;
    expect(fanout.socket(fast).frames.length).toBe(200);
    const got = fanout.socket(slow).frames.length;
    expect(slow.lag).toBeDefined();
    expect(slow.subscribed).toBe(false);
    // Held off within one check interval (16 KiB) past the limit: it got a few, not most.
    expect(got).toBeGreaterThan(LIMIT / 1014);
    expect(got).toBeLessThan((LIMIT + 16 * 1024) / 1014 + 2);
    // Every message is either received or counted as dropped, while it still lags.
    expect(s.dropped).toBe(200 - got);
    expect(s.droppedSettled).toBe(0);
    expect(hub.droppedTotal()).toBe(200 - got);

    // It reads everything: it catches up, its misses are settled, and it receives again.
    fanout.socket(slow).buffered = 0;
    hub.drained(slow);
    expect(slow.lag).toBeUndefined();
    expect(slow.subscribed).toBe(true);
    expect(slow.dropped).toBe(200 - got);
    expect(s.droppedSettled).toBe(200 - got);
    expect(hub.totals.droppedSettled).toBe(200 - got);
    await publishMany(hub, "bp", 1, 200);
    expect(fanout.socket(slow).frames.at(-1)).toStartWith("200:");
    expect(hub.droppedTotal()).toBe(200 - got);
    expect(s.slowDisconnects).toBe(0);
  });

  it("drop: a lagging subscriber still over half the limit stays held off when its socket drains a little", async () => {
    const { hub, fanout } = makeHub({ backpressure_policy: "drop" });
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    await publishMany(hub, "bp", 50);
    expect(slow.lag).toBeDefined();
    fanout.socket(slow).buffered = LIMIT / 2 + 1;
    hub.drained(slow);
    expect(slow.lag).toBeDefined();
    fanout.socket(slow).buffered = LIMIT / 2;
    hub.drained(slow);
    expect(slow.lag).toBeUndefined();
  });

  it("drop: a subscriber's own messages are not counted as missed while it lags", async () => {
    const { hub, fanout } = makeHub({ backpressure_policy: "drop" });
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    await publishMany(hub, "bp", 50);
    const got = fanout.socket(slow).frames.length;
    for (let i = 0; i < 10; i++) hub.publish("bp", "own", slow.origin, slow);
    await publishMany(hub, "bp", 5, 50);
    expect(hub.stream("bp")!.dropped).toBe(55 - got);
    fanout.socket(slow).buffered = 0;
    hub.drained(slow);
    expect(slow.dropped).toBe(55 - got);
    expect(hub.stream("bp")!.dropped).toBe(55 - got);
  });

  it("drop: a lagging subscriber that leaves has its misses settled; the total never goes down", async () => {
    const { hub, fanout } = makeHub({ backpressure_policy: "drop" });
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    await publishMany(hub, "bp", 100);
    const before = hub.droppedTotal();
    expect(before).toBeGreaterThan(0);
    hub.leave(slow);
    expect(hub.stream("bp")!.droppedSettled).toBe(before);
    expect(hub.totals.droppedSettled).toBe(before);
    expect(hub.droppedTotal()).toBe(before);
    expect(fanout.subscribers("bp")).toEqual([]);
  });

  it("drop: misses on the streams a feed rule adds are counted when the subscriber catches up", async () => {
    const { hub, fanout } = makeHub({ backpressure_policy: "drop" });
    hub.setFeeds("room", ["camera"]);
    const slow = fanout.connection("room", {}, true);
    hub.join(slow);
    await publishMany(hub, "camera", 100);
    expect(slow.lag).toBeDefined();
    const got = fanout.socket(slow).frames.length;
    await publishMany(hub, "camera", 20, 100);
    fanout.socket(slow).buffered = 0;
    hub.drained(slow);
    expect(slow.dropped).toBe(120 - got);
    expect(hub.totals.droppedSettled).toBe(120 - got);
  });

  it("disconnect: a subscriber over the limit is closed with 1013 and the limit, and cut off if it never reads", async () => {
    const { hub, fanout, fast, slow } = fastAndSlow("disconnect");
    await publishMany(hub, "bp", 100);
    const closed = fanout.socket(slow).closed!;
    expect(closed.code).toBe(1013);
    expect(closed.reason).toContain("too slow");
    expect(closed.reason).toContain(`limit ${LIMIT} (backpressure policy disconnect)`);
    expect(slow.closing).toBe(true);
    expect(slow.timers.length).toBe(1); // the terminate timer, cleared on leave
    const s = hub.stream("bp")!;
    expect(s.slowDisconnects).toBe(1);
    expect(hub.totals.slowDisconnects).toBe(1);
    expect(s.dropped).toBe(0);
    expect(fanout.socket(fast).frames.length).toBe(100);
    hub.leave(slow);
    expect(hub.droppedTotal()).toBe(0);
  });

  it("a lagging subscriber is disconnected at the next tick once the policy is switched to disconnect; its misses stay counted", async () => {
    const { hub, fanout, set } = makeHub({ backpressure_policy: "drop" });
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    await publishMany(hub, "bp", 100);
    expect(slow.lag).toBeDefined();
    hub.tick();
    expect(fanout.socket(slow).closed).toBeUndefined();
    set({ backpressure_policy: "disconnect" });
    hub.tick();
    expect(fanout.socket(slow).closed?.code).toBe(1013);
    expect(hub.stream("bp")!.slowDisconnects).toBe(1);
    const missed = hub.droppedTotal();
    hub.leave(slow);
    expect(missed).toBeGreaterThan(0);
    expect(hub.stream("bp")!.droppedSettled).toBe(missed);
  });

  it("a lagging subscriber whose socket drained without a drain event catches up at the next tick", async () => {
    const { hub, fanout } = makeHub({ backpressure_policy: "drop" });
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    await publishMany(hub, "bp", 100);
    fanout.socket(slow).buffered = 0;
    hub.tick();
    expect(slow.lag).toBeUndefined();
    expect(slow.subscribed).toBe(true);
  });

  it("a drop reported by the native layer triggers a check at once and a warning", async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (msg) => { warnings.push(msg); } };
    const { hub } = makeHub({ backpressure_policy: "drop" }, logger);
    const fanout = new FakeFanOut(LIMIT);
    hub.attachFanOut(fanout);
    const slow = fanout.connection("bp", {}, true);
    hub.join(slow);
    // Under the check interval (16 KiB), only the native drop can start a check.
    await publishMany(hub, "bp", 7);
    expect(slow.lag).toBeDefined();
    expect(warnings).toContain("native layer dropped a message before the backpressure check");
  });

  it("the native per-socket limit is above the policy limit, a check interval and a message", () => {
    const { hub } = makeHub({ backpressure_limit_bytes: 1024 * 1024 });
    expect(hub.backpressure.checkEveryBytes).toBe(256 * 1024);
    expect(hub.nativeBackpressureLimit(65536)).toBe(1024 * 1024 + 256 * 1024 + 65536 + 64 * 1024);
    expect(makeHub({ backpressure_limit_bytes: 1024 }).hub.backpressure.checkEveryBytes).toBe(16 * 1024);
  });
});

describe("hub stats and delivery (fake fan-out)", () => {
  it("counts messages and bytes in once and out per receiver, leaving out the sender", async () => {
    const { hub, fanout } = makeHub();
    const pub = fanout.connection("s");
    const a = fanout.connection("s");
    const b = fanout.connection("s");
    const writer = fanout.connection("s", { read: false });
    for (const c of [pub, a, b, writer]) hub.join(c);
    hub.publish("s", "hello", pub.origin, pub);
    hub.notePublisher(pub);
    hub.publish("s", new Uint8Array(10), "http:127.0.0.1");
    await endOfTurn();
    const s = hub.stream("s")!;
    expect([s.messagesIn, s.bytesIn]).toEqual([2, 15]);
    // "hello" to a and b (not the sender, not the write-only client); the 10 bytes to pub, a and b.
    expect([s.messagesOut, s.bytesOut]).toEqual([2 + 3, 2 * 5 + 3 * 10]);
    expect(hub.totals).toMatchObject({ messagesIn: 2, bytesIn: 15, messagesOut: 5, bytesOut: 40, connectionsOpened: 4 });
    expect(fanout.socket(pub).frames).toEqual([new Uint8Array(10)]);
    expect(s.publishers).toBe(2);
    expect(s.subscribers).toBe(3);
    expect(hub.connections).toBe(4);
  });

  it("stamps seq per stream, and delivers only at the end of the turn, after the before-delivery hooks", async () => {
    const { hub, fanout } = makeHub();
    const order: string[] = [];
    hub.onMessage((m) => order.push(`accepted ${m.seq}`));
    hub.onBeforeDelivery(() => order.push("log write"));
    hub.onDelivery((m) => order.push(`delivered ${m.seq}`));
    hub.join(fanout.connection("s"));
    expect(hub.publish("s", "a", "udp:x").seq).toBe(1);
    expect(hub.publish("s", "b", "udp:x").seq).toBe(2);
    expect(hub.publish("t", "c", "udp:x").seq).toBe(1);
    expect(fanout.published.filter((p) => p.stream === "s")).toEqual([]);
    expect(hub.stream("s")!.deliveredSeq).toBe(0);
    await endOfTurn();
    expect(order).toEqual(["accepted 1", "accepted 2", "accepted 1", "log write", "delivered 1", "delivered 2", "delivered 1"]);
    expect(hub.stream("s")!.deliveredSeq).toBe(2);
  });

  it("delivers a flood every 4096 messages without waiting for the end of the turn", () => {
    const { hub, fanout } = makeHub();
    hub.join(fanout.connection("s"));
    const sent = () => fanout.published.filter((p) => p.stream === "s").length;
    for (let i = 0; i < 4095; i++) hub.publish("s", "x", "udp:x");
    expect(sent()).toBe(0);
    hub.publish("s", "x", "udp:x");
    expect(sent()).toBe(4096);
    hub.publish("s", "x", "udp:x");
    expect(sent()).toBe(4096);
  });

  it("a failing sink is counted and costs neither the message nor the other sinks", async () => {
    const { hub } = makeHub();
    const seen: Message[] = [];
    hub.onMessage(() => { throw new Error("bug"); });
    hub.onMessage((m) => seen.push(m));
    hub.onDelivery(() => { throw new Error("bug"); });
    hub.publish("s", "a", "udp:x");
    await endOfTurn();
    expect(seen.length).toBe(1);
    expect(hub.totals.sinkErrors).toBe(2);
  });

  it("refuses an oversized message and a bad stream name with a PublishError that names the rule", () => {
    const { hub } = makeHub({ max_message_bytes: 4 });
    expect(() => hub.publish("s", "12345", "udp:x")).toThrow(new PublishError("too_large", "message of 5 bytes is larger than the limit of 4 bytes (setting max_message_bytes)"));
    let err: unknown;
    try { hub.publish("bad name", "1", "udp:x"); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe("bad_stream");
  });

  it("retires an idle stream after the linger time and brings it back with its seq and counters", async () => {
    const { hub, clock } = makeHub({ stream_linger_seconds: 10 });
    const events: StreamEvent["event"][] = [];
    hub.onStreamEvent((e) => events.push(e.event));
    await publishMany(hub, "s", 3);
    hub.tick();
    clock.advance(9_000);
    hub.tick();
    expect(hub.stream("s")).toBeDefined();
    clock.advance(2_000);
    hub.tick();
    expect(hub.stream("s")).toBeUndefined();
    expect(events).toEqual(["stream_added", "stream_removed"]);
    expect(hub.publish("s", "again", "udp:x").seq).toBe(4);
    expect(hub.stream("s")!.messagesIn).toBe(4);
  });

  it("forgets a publisher silent for a minute", async () => {
    const { hub, fanout, clock } = makeHub();
    hub.join(fanout.connection("s"));
    hub.publish("s", "a", "udp:10.0.0.9:1");
    expect(hub.stream("s")!.publishers).toBe(1);
    clock.advance(61_000);
    hub.tick();
    expect(hub.stream("s")!.publishers).toBe(0);
  });
});
