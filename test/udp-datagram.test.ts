import { describe, expect, it, setDefaultTimeout } from "bun:test";
import { compileStreamPatterns } from "../app/core/stream-pattern.ts";
import { parseUdpListenerSpec } from "../app/core/udp-spec.ts";
import { DatagramDecoder, looksTruncated, type DatagramRules } from "../app/sources/udp/datagram.ts";

// Real servers, sockets and subprocesses: more than Bun's 5 s default on a busy machine (set per file; a preload's applies to the first file only).
setDefaultTimeout(60_000);

const rules = (r: Partial<DatagramRules> = {}): DatagramRules => ({ format: "json", streamField: "stream", maxBytes: 1000, allowed: () => true, ...r });
const bytes = (s: string) => new TextEncoder().encode(s);

describe("decoding datagrams", () => {
  it("json: the stream comes from the field and the whole object is the message", () => {
    const d = new DatagramDecoder(rules());
    expect(d.decode(bytes('{"stream":"spin30","v":1}'))).toEqual([{ ok: true, stream: "spin30", data: '{"stream":"spin30","v":1}' }]);
    expect(new DatagramDecoder(rules({ streamField: "topic" })).decode(bytes('{"topic":"a/b"}'))).toEqual([{ ok: true, stream: "a/b", data: '{"topic":"a/b"}' }]);
  });

  it("json: several objects on lines (NDJSON) are several messages, each judged alone", () => {
    const d = new DatagramDecoder(rules());
    const out = d.decode(bytes('{"stream":"a","i":1}\n{"stream":"b","i":2}\r\n\nnot json\n{"stream":"a","i":3'));
    expect(out.map((r) => (r.ok ? `${r.stream}` : r.reason))).toEqual(["a", "b", "bad_json", "truncated"]);
  });

  it("json: names each kind of bad record", () => {
    const d = new DatagramDecoder(rules({ allowed: compileStreamPatterns(["spin*"]) }));
    const reason = (s: string | Uint8Array) => { const r = d.decode(typeof s === "string" ? bytes(s) : s)[0]!; return r.ok ? "ok" : r.reason; };
    expect(reason('{"stream":"spin1"}')).toBe("ok");
    expect(reason('{"stream":"other"}')).toBe("not_allowed");
    expect(reason('{"stream":"bad name"}')).toBe("bad_stream");
    expect(reason('{"stream":5}')).toBe("no_stream");
    expect(reason('{"v":1}')).toBe("no_stream");
    expect(reason("[1,2]")).toBe("not_object");
    expect(reason("42")).toBe("not_object");
    expect(reason('{"stream":"spin1",}')).toBe("bad_json");
    expect(reason('{"stream":"spin1","v":"ab')).toBe("truncated");
    expect(reason(new Uint8Array([0x7b, 0xff, 0x7d]))).toBe("bad_utf8");
    expect(reason(new Uint8Array(1001))).toBe("too_large");
    expect(reason(new Uint8Array(0))).toBe("empty");
    expect(d.decode(bytes('{"stream":"spin1"}'), true)[0]).toMatchObject({ ok: false, reason: "truncated" });
  });

  it("json with a fixed stream: every object goes there", () => {
    const d = new DatagramDecoder(rules({ stream: "fixed" }));
    expect(d.decode(bytes('{"stream":"elsewhere","v":1}'))).toEqual([{ ok: true, stream: "fixed", data: '{"stream":"elsewhere","v":1}' }]);
  });

  it("line: stream<TAB>payload per line", () => {
    const d = new DatagramDecoder(rules({ format: "line" }));
    const out = d.decode(bytes("spin30\t1.5,2.5\nspin31\thello\tworld\r\nno tab here"));
    expect(out).toEqual([
      { ok: true, stream: "spin30", data: "1.5,2.5" },
      { ok: true, stream: "spin31", data: "hello\tworld" },
      { ok: false, reason: "bad_line", detail: "a line must be stream<TAB>payload" },
    ]);
  });

  it("raw: the datagram as is, binary, onto the listener's stream; text: as UTF-8 text", () => {
    const raw = new DatagramDecoder(rules({ format: "raw", stream: "cam" })).decode(new Uint8Array([0, 255, 1]));
    expect(raw[0]).toMatchObject({ ok: true, stream: "cam" });
    expect([...((raw[0] as { data: Uint8Array }).data)]).toEqual([0, 255, 1]);
    const text = new DatagramDecoder(rules({ format: "text", stream: "log" }));
    expect(text.decode(bytes("a,b\nc,d"))).toEqual([{ ok: true, stream: "log", data: "a,b\nc,d" }]);
    expect(text.decode(new Uint8Array([0xc3]))[0]).toMatchObject({ reason: "bad_utf8" });
  });

  it("tells a cut-off JSON prefix from broken JSON", () => {
    for (const t of ['{"a":1', '{"a":"b', '{"a":[1,2', '{"a":"\\"']) expect(looksTruncated(t)).toBe(true);
    for (const t of ['{"a":1}}', 'x{"a":1}', '{"a":1,}', "nope"]) expect(looksTruncated(t)).toBe(false);
  });

  it("parses --udp listener specs and says what is allowed", () => {
    expect(parseUdpListenerSpec("9001=spin30:raw")).toEqual({ port: 9001, format: "raw", stream: "spin30" });
    expect(parseUdpListenerSpec("9001=spin30")).toEqual({ port: 9001, format: "raw", stream: "spin30" });
    expect(parseUdpListenerSpec("9002=:line")).toEqual({ port: 9002, format: "line" });
    expect(parseUdpListenerSpec("9003=:json")).toEqual({ port: 9003, format: "json" });
    expect(() => parseUdpListenerSpec("9001")).toThrow("allowed: PORT=STREAM[:FORMAT]");
    expect(() => parseUdpListenerSpec("9001=:raw")).toThrow("format raw needs a stream");
    expect(() => parseUdpListenerSpec("9001=s:csv")).toThrow("allowed: json, line, raw, text");
    expect(() => parseUdpListenerSpec("70000=s:raw")).toThrow("allowed: 1 to 65535");
  });
});
