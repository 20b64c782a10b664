import { badRequest, tooLarge } from "../../core/errors.ts";

/** Content type of a batch of text messages: one message per line. */
export const NDJSON_TYPE = "application/x-ndjson";
/** Content type of a batch of binary messages: frames of `u32 big-endian length | bytes`. */
export const FRAMED_TYPE = "application/x-switchyard-batch";
/** Most bytes of one batch body (either form): 16 MiB, whatever max_message_bytes is. */
export const BATCH_BODY_LIMIT = 16 * 1024 * 1024;
/**
 * Most bytes of batch bodies held at once over all requests (a batch holds its
 * body, its text and its messages until answered): past it a batch gets 503
 * with Retry-After. A chunked batch counts as BATCH_BODY_LIMIT.
 */
export const BATCH_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/** Most messages in one batch. */
export const BATCH_MAX_MESSAGES = 100_000;

/** The batch form a Content-Type asks for, or null for a single message. */
export function batchForm(contentType: string | null | undefined): "ndjson" | "framed" | null {
  if (!contentType) return null;
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  return t === NDJSON_TYPE ? "ndjson" : t === FRAMED_TYPE ? "framed" : null;
}

const fatal = new TextDecoder("utf-8", { fatal: true });

/**
 * The messages of an NDJSON batch, one per line, stored as they are (the line is
 * not parsed). Lines end with `\n` (a `\r` before it is dropped); the last line
 * may end without one. An empty line, a line that is not valid UTF-8, a line
 * over `maxMessageBytes`, more than BATCH_MAX_MESSAGES lines, or no line at all
 * refuses the whole batch: 400 (413 for a line too large) naming the line.
 */
export function splitNdjson(body: Uint8Array, maxMessageBytes: number): string[] {
  let text: string;
  try {
    text = fatal.decode(body);
  } catch {
    throw badRequest(`line ${badUtf8Line(body)} is not valid UTF-8; nothing of the batch was stored. Each line of an ${NDJSON_TYPE} batch is a text message; send binary messages as ${FRAMED_TYPE}`, { line: badUtf8Line(body) });
  }
  if (text.length === 0) throw badRequest(`the batch is empty: send one message per line (${NDJSON_TYPE})`);
  const lines = text.split("\n");
  // A final newline ends the last line; it does not start an empty one.
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length > BATCH_MAX_MESSAGES) throw tooLarge(`the batch has ${lines.length} lines, more than the limit of ${BATCH_MAX_MESSAGES} messages per batch; nothing was stored. Split it`, { limit: BATCH_MAX_MESSAGES });
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith("\r")) line = lines[i] = line.slice(0, -1);
    if (line.length === 0) throw badRequest(`line ${i + 1} is empty; nothing of the batch was stored. Each line is one message and a message cannot be empty (a final newline is fine)`, { line: i + 1 });
    // UTF-16 length bounds the UTF-8 size: at most 3 bytes per unit.
    if (line.length * 3 > maxMessageBytes) {
      const bytes = Buffer.byteLength(line);
      if (bytes > maxMessageBytes) throw tooLarge(`line ${i + 1} is ${bytes} bytes, larger than the limit of ${maxMessageBytes} bytes per message (setting max_message_bytes); nothing of the batch was stored`, { line: i + 1, limit: maxMessageBytes });
    }
  }
  return lines;
}

/** The 1-based line of the first invalid UTF-8 sequence in `body`. */
function badUtf8Line(body: Uint8Array): number {
  let start = 0;
  for (let line = 1; ; line++) {
    const end = body.indexOf(0x0a, start);
    const stop = end < 0 ? body.length : end;
    try {
      fatal.decode(body.subarray(start, stop));
    } catch {
      return line;
    }
    if (end < 0) return line;
    start = end + 1;
  }
}

/**
 * The binary messages of a framed batch: each frame is a 4-byte big-endian
 * length then that many bytes. A frame of length 0, over `maxMessageBytes`, or
 * cut short by the end of the body, or more than BATCH_MAX_MESSAGES frames,
 * refuses the whole batch: 400 (413 for a frame too large) naming the frame and
 * its byte offset.
 */
export function splitFrames(body: Uint8Array, maxMessageBytes: number): Uint8Array[] {
  if (body.byteLength === 0) throw badRequest(`the batch is empty: send frames of a 4-byte big-endian length followed by that many bytes (${FRAMED_TYPE})`);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < body.byteLength) {
    const frame = out.length + 1;
    if (frame > BATCH_MAX_MESSAGES) throw tooLarge(`the batch has more than ${BATCH_MAX_MESSAGES} frames, the limit of messages per batch; nothing was stored. Split it`, { limit: BATCH_MAX_MESSAGES });
    if (at + 4 > body.byteLength) throw badRequest(`frame ${frame} at byte ${at} is cut short: ${body.byteLength - at} bytes left where a 4-byte big-endian length belongs; nothing of the batch was stored`, { frame, offset: at });
    const n = view.getUint32(at);
    if (n === 0) throw badRequest(`frame ${frame} at byte ${at} has length 0; a message cannot be empty; nothing of the batch was stored`, { frame, offset: at });
    if (n > maxMessageBytes) throw tooLarge(`frame ${frame} at byte ${at} is ${n} bytes, larger than the limit of ${maxMessageBytes} bytes per message (setting max_message_bytes); nothing of the batch was stored`, { frame, offset: at, limit: maxMessageBytes });
    if (at + 4 + n > body.byteLength) throw badRequest(`frame ${frame} at byte ${at} says ${n} bytes but only ${body.byteLength - at - 4} follow; nothing of the batch was stored`, { frame, offset: at });
    out.push(body.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** Encodes binary messages as a framed batch (for clients and tests). */
export function encodeFrames(messages: Uint8Array[]): Uint8Array {
  const total = messages.reduce((a, m) => a + 4 + m.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const m of messages) {
    view.setUint32(at, m.byteLength);
    out.set(m, at + 4);
    at += 4 + m.byteLength;
  }
  return out;
}
