import { STREAM_NAME_RULE, streamNameProblem } from "./stream-name.ts";

/**
 * How a UDP listener reads a datagram:
 * - `json`: one JSON object per line (NDJSON: several lines, several messages); the stream is a field of the object;
 * - `line`: `stream<TAB>payload` per line;
 * - `raw`: the datagram as is, as one binary message, onto the listener's stream;
 * - `text`: the datagram as one UTF-8 text message onto the listener's stream.
 */
export const UDP_FORMATS = ["json", "line", "raw", "text"] as const;
export type UdpFormat = (typeof UDP_FORMATS)[number];

/** An extra UDP listener: a port, its format, and (for raw, text, and optionally json) the stream it feeds. */
export interface UdpListenerSpec {
  port: number;
  format: UdpFormat;
  stream?: string;
}

/** The `--udp` syntax, for error messages. */
export const UDP_SPEC_RULE = "PORT=STREAM[:FORMAT] or PORT=:FORMAT, FORMAT one of json, line, raw, text (e.g. 9001=spin30:raw, 9002=:line)";

/** Checks a listener spec; null when valid, else what is wrong and what is allowed. */
export function udpListenerProblem(spec: UdpListenerSpec): string | null {
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) return `port ${JSON.stringify(spec.port)} is not valid; allowed: 1 to 65535`;
  if (!(UDP_FORMATS as readonly string[]).includes(spec.format)) return `format ${JSON.stringify(spec.format)} is not valid; allowed: ${UDP_FORMATS.join(", ")}`;
  if (spec.stream !== undefined) {
    const p = streamNameProblem(spec.stream);
    if (p) return p;
    if (spec.format === "line") return "format line takes the stream from each line; give no stream (e.g. 9002=:line)";
  } else if (spec.format === "raw" || spec.format === "text") {
    return `format ${spec.format} needs a stream (e.g. ${spec.port}=spin30:${spec.format}); allowed stream names: ${STREAM_NAME_RULE}`;
  }
  return null;
}

/** Parses `9001=spin30:raw`; throws an Error saying what is wrong and what is allowed. */
export function parseUdpListenerSpec(text: string): UdpListenerSpec {
  const m = /^(\d+)=([^:]*)(?::(\w+))?$/.exec(text.trim());
  if (!m) throw new Error(`${JSON.stringify(text)} is not a UDP listener; allowed: ${UDP_SPEC_RULE}`);
  const stream = m[2] || undefined;
  const spec: UdpListenerSpec = { port: Number(m[1]), format: (m[3] ?? (stream ? "raw" : "json")) as UdpFormat, ...(stream ? { stream } : {}) };
  const problem = udpListenerProblem(spec);
  if (problem) throw new Error(`${JSON.stringify(text)}: ${problem}`);
  return spec;
}
