import { describe, expect, it } from "bun:test";
import { patternSubject } from "../app/cluster/interest.ts";
import { reconnectDelay, shownServer } from "../app/cluster/link.ts";
import { STREAM_SUBJECT_PREFIX, streamSubject, subjectStream } from "../app/cluster/subjects.ts";
import { streamNameProblem } from "../app/core/stream-name.ts";

/** NATS's rule for a literal publish subject: non-empty tokens split by '.', none of them '*' or '>' or holding white space. */
function literalSubject(subject: string): boolean {
  return subject.split(".").every((t) => t.length > 0 && t !== "*" && t !== ">" && !/[\s*>]/.test(t));
}

describe("stream names as NATS subjects", () => {
  it("maps the documented examples", () => {
    expect(streamSubject("spin")).toBe("switchyard.s.spin");
    expect(streamSubject("lab/rig-1/cam.front")).toBe("switchyard.s.lab.rig-1.cam_2Efront");
    expect(streamSubject("a_b")).toBe("switchyard.s.a_5Fb");
    expect(streamSubject("a.b/c")).toBe("switchyard.s.a_2Eb.c");
  });

  it("round-trips names with every special character a stream name may hold", () => {
    const names = ["a", "A9", "a.b", "a..b", "a_b", "a__b", "a-b", "a/b", "a/b/c", "a.b/c_d/e-f", "x_2E", "x_5F", "9", "a.", "a-", "a_", "lab/rig-1/cam.front", "a".repeat(200), "a/".repeat(61) + "a", "ab/".repeat(24) + "x".repeat(128)]; // the most "/" a name may hold, and the longest with "/"
    for (const name of names) {
      expect(streamNameProblem(name)).toBeNull();
      const subject = streamSubject(name);
      expect(literalSubject(subject)).toBe(true);
      expect(subjectStream(subject)).toBe(name);
    }
  });

  it("is injective where a plain '.' ↔ '/' swap would not be", () => {
    const pairs = [["a.b", "a/b"], ["a_2Eb", "a.b"], ["a_b", "a_5Fb"], ["x_2F", "x/"]];
    for (const [x, y] of pairs) expect(streamSubject(x!)).not.toBe(streamSubject(y!));
    // Every valid name over a small alphabet, up to 3 characters: no two share a subject.
    const alphabet = ["a", "Z", "0", ".", "_", "-", "/"];
    const seen = new Map<string, string>();
    const walk = (prefix: string) => {
      if (prefix.length > 0 && streamNameProblem(prefix) === null) {
        const s = streamSubject(prefix);
        expect(seen.get(s) ?? prefix).toBe(prefix);
        seen.set(s, prefix);
        expect(subjectStream(s)).toBe(prefix);
      }
      if (prefix.length < 3) for (const c of alphabet) walk(prefix + c);
    };
    walk("");
    expect(seen.size).toBeGreaterThan(50);
  });

  it("escapes characters NATS treats specially, so no subject is a wildcard", () => {
    // Not valid stream names today, but the mapping must stay safe if the name rule ever widens.
    for (const name of ["*", ">", "a*b", "a>b", "a b", "a\tb", "é", "a/*", "a/>"]) {
      const subject = streamSubject(name);
      expect(literalSubject(subject)).toBe(true);
      expect(subject).not.toContain("*");
      expect(subject).not.toContain(">");
      expect(subject).not.toContain(" ");
    }
    expect(streamSubject("*")).toBe("switchyard.s._2A");
    expect(streamSubject(">")).toBe("switchyard.s._3E");
    expect(streamSubject("a b")).toBe("switchyard.s.a_20b");
    expect(streamSubject("é")).toBe("switchyard.s._C3_A9");
  });

  it("refuses subjects that do not decode to a valid stream name", () => {
    for (const subject of [
      "switchyard.s.", "switchyard.s", "other.s.a", "switchyard.s.a..b", "switchyard.s.a.*", "switchyard.s.>",
      "switchyard.s.a_2", "switchyard.s.a_zz", "switchyard.s.a_2e", // lower-case hex is not canonical
      "switchyard.s._41", // 'A' escaped: decodes, but is not the canonical subject of "A"
      "switchyard.s._2A", // '*': not a valid stream name
      "switchyard.s._FF", // not UTF-8
      "switchyard.s.a b", STREAM_SUBJECT_PREFIX + "a".repeat(201),
    ]) expect(subjectStream(subject)).toBeNull();
  });

  it("turns alert patterns into subjects that cover what they match", () => {
    expect(patternSubject("spin")).toBe("switchyard.s.spin");
    expect(patternSubject("lab/rig*")).toBe("switchyard.s.lab.>");
    expect(patternSubject("lab/*/cam")).toBe("switchyard.s.lab.>");
    expect(patternSubject("spin*")).toBe("switchyard.s.>");
  });

});

describe("the NATS link: addresses as shown, reconnect timing", () => {
  it("never shows a NATS server's user and password", () => {
    expect(shownServer("nats://alice:s3cret@10.0.0.1:4222")).toBe("nats://***@10.0.0.1:4222");
    expect(shownServer("tls://token@nats.example:4222")).toBe("tls://***@nats.example:4222");
    expect(shownServer("nats://10.0.0.1:4222")).toBe("nats://10.0.0.1:4222");
  });

  it("backs off reconnects exponentially to a cap, with jitter", () => {
    const b = { baseMs: 250, maxMs: 5000 };
    expect([0, 1, 2, 3, 4, 5, 20].map((n) => reconnectDelay(n, b, () => 0.5))).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
    expect(reconnectDelay(0, b, () => 0)).toBe(125);
    expect(reconnectDelay(10, b, () => 0.999999)).toBe(7500);
    expect(reconnectDelay(1e9, b, () => 0.5)).toBe(5000);
  });
});
