import { streamNameProblem } from "../core/stream-name.ts";

/** Every Switchyard subject starts with this token. */
export const SUBJECT_ROOT = "switchyard";

/** Prefix of the subjects that carry stream messages: `switchyard.s.<token>[.<token>…]`. */
export const STREAM_SUBJECT_PREFIX = `${SUBJECT_ROOT}.s.`;

/** The request/reply subject every node answers with its state (see ClusterStatus). */
export const STATUS_SUBJECT = `${SUBJECT_ROOT}.status`;

/** Characters kept as they are inside a token; everything else is escaped as `_XX` per UTF-8 byte. */
const PLAIN = /[A-Za-z0-9-]/;

function encodeSegment(segment: string): string {
  let out = "";
  for (const ch of segment) {
    if (PLAIN.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of Buffer.from(ch, "utf8")) out += `_${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * The NATS subject of a stream. Each `/`-separated segment becomes one subject
 * token; inside a token only A-Z a-z 0-9 and `-` stay as they are, every other
 * byte (`.`, `_`, `*`, `>`, a space, any UTF-8) becomes `_` and two upper-case
 * hex digits. `_` itself is escaped, so the mapping is injective, and no token
 * can be `*` or `>` or hold a `.` or white space: the subject is never a wildcard.
 * `lab/rig-1/cam.front` → `switchyard.s.lab.rig-1.cam_2Efront`.
 */
export function streamSubject(stream: string): string {
  // An empty segment (not a valid stream name, but kept injective) becomes `_`, which no encoded segment can be.
  return STREAM_SUBJECT_PREFIX + stream.split("/").map((s) => (s === "" ? "_" : encodeSegment(s))).join(".");
}

/** The stream a subject carries, or null when the subject is not one streamSubject() makes for a valid stream name. */
export function subjectStream(subject: string): string | null {
  if (!subject.startsWith(STREAM_SUBJECT_PREFIX)) return null;
  const segments: string[] = [];
  for (const token of subject.slice(STREAM_SUBJECT_PREFIX.length).split(".")) {
    if (!/^(?:[A-Za-z0-9-]|_[0-9A-F]{2})+$/.test(token)) return null;
    const bytes: number[] = [];
    for (let i = 0; i < token.length; ) {
      if (token[i] === "_") {
        bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
        i += 3;
      } else bytes.push(token.charCodeAt(i++));
    }
    const text = new TextDecoder("utf-8", { fatal: true });
    try {
      segments.push(text.decode(new Uint8Array(bytes)));
    } catch {
      return null;
    }
  }
  const stream = segments.join("/");
  // Canonical form only: a subject that decodes but is not what streamSubject() gives (e.g. `_41` for `A`) is refused.
  if (streamNameProblem(stream) !== null || streamSubject(stream) !== subject) return null;
  return stream;
}
