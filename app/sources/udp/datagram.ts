import { isUtf8 } from "node:buffer";
import type { Payload } from "../../core/message.ts";
import { streamNameProblem } from "../../core/stream-name.ts";
import type { UdpFormat } from "../../core/udp-spec.ts";

/** Why a datagram, or one record in it, was rejected. Stable names, used as metric labels. */
export const REJECT_REASONS = ["too_large", "truncated", "empty", "bad_utf8", "bad_json", "not_object", "no_stream", "bad_stream", "not_allowed", "bad_line", "source_not_allowed", "log_unavailable"] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** How a listener reads its datagrams. */
export interface DatagramRules {
  format: UdpFormat;
  /** The stream every message goes to (raw, text; json when set). */
  stream?: string;
  /** The JSON field naming the stream (json without a fixed stream). */
  streamField: string;
  maxBytes: number;
  allowed: (stream: string) => boolean;
  /** Which senders may feed this listener (by address); none given: any. Checked before decoding. */
  sourceAllowed?: (address: string) => boolean;
}

/** One record of a datagram: a message to publish, or a reject with a short detail. */
export type Record =
  | { ok: true; stream: string; data: Payload }
  | { ok: false; reason: RejectReason; detail: string };

const MAX_CACHED_STREAMS = 10_000;

/**
 * Turns datagrams into messages by a listener's rules. Pure: no I/O, never
 * throws on any input. Remembers the verdict on each stream name it has seen
 * (name rule and allow-list), so the hot path checks a name once.
 */
export class DatagramDecoder {
  private verdicts = new Map<string, Record | null>();

  constructor(readonly rules: DatagramRules) {}

  /** Decodes one datagram into records, in order. `kernelTruncated` is the kernel's MSG_TRUNC flag. */
  decode(buf: Uint8Array, kernelTruncated = false): Record[] {
    const r = this.rules;
    if (kernelTruncated) return [reject("truncated", `datagram was cut by the receive buffer at ${buf.byteLength} bytes`)];
    if (buf.byteLength > r.maxBytes) return [reject("too_large", `${buf.byteLength} bytes; the limit is ${r.maxBytes} (setting udp_max_datagram_bytes)`)];
    if (buf.byteLength === 0) return [reject("empty", "empty datagram")];
    if (r.format === "raw") return [this.onStream(r.stream!, buf)];
    if (!isUtf8(buf)) return [reject("bad_utf8", "datagram is not valid UTF-8")];
    const text = (Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)).toString("utf8");
    if (r.format === "text") return [this.onStream(r.stream!, text)];
    const lines = text.includes("\n") ? text.split("\n").filter((l) => l.trim() !== "") : [text];
    if (lines.length === 0) return [reject("empty", "datagram holds only blank lines")];
    return lines.map((line) => (r.format === "json" ? this.jsonRecord(line) : this.lineRecord(line)));
  }

  private jsonRecord(line: string): Record {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      return looksTruncated(line)
        ? reject("truncated", "JSON ends before the object is complete")
        : reject("bad_json", (err as Error).message.replace(/^JSON Parse error: /, ""));
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return reject("not_object", "a JSON datagram must be an object");
    if (this.rules.stream) return this.onStream(this.rules.stream, line);
    const stream = (value as { [k: string]: unknown })[this.rules.streamField];
    if (typeof stream !== "string") return reject("no_stream", `no string field "${this.rules.streamField}" names the stream`);
    return this.onStream(stream, line);
  }

  private lineRecord(line: string): Record {
    const tab = line.indexOf("\t");
    if (tab < 0) return reject("bad_line", "a line must be stream<TAB>payload");
    return this.onStream(line.slice(0, tab), line.slice(tab + 1).replace(/\r$/, ""));
  }

  private onStream(stream: string, data: Payload): Record {
    let verdict = this.verdicts.get(stream);
    if (verdict === undefined) {
      const problem = streamNameProblem(stream);
      verdict = problem ? reject("bad_stream", problem)
        : !this.rules.allowed(stream) ? reject("not_allowed", `stream ${JSON.stringify(stream)} is not in the UDP allow-list (setting udp_allow)`)
        : null;
      if (this.verdicts.size >= MAX_CACHED_STREAMS) this.verdicts.clear();
      this.verdicts.set(stream, verdict);
    }
    return verdict ?? { ok: true, stream, data };
  }
}

function reject(reason: RejectReason, detail: string): Record {
  return { ok: false, reason, detail };
}

/**
 * True when text that failed to parse as JSON is a cut-off prefix: it ends inside
 * a string, or with an object or array still open.
 */
export function looksTruncated(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* \ */) i++;
      else if (ch === 34 /* " */) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 123 /* { */ || ch === 91 /* [ */) depth++;
    else if (ch === 125 /* } */ || ch === 93 /* ] */) {
      if (--depth < 0) return false;
    }
  }
  return inString || depth > 0;
}
