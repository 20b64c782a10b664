/** Payload of a message: text stays text, binary stays binary. */
export type Payload = string | Uint8Array;

/**
 * Where a message came from: `ws:<addr>:<port>`, `udp:<addr>:<port>`, `http:<addr>`,
 * `relay:<id>`. Free text, but always `kind:detail`.
 */
export type Origin = string;

/** One accepted message, as every sink sees it. */
export interface Message {
  stream: string;
  /** Receive time, microseconds since the Unix epoch. */
  ts: number;
  /** Per-stream sequence number, strictly increasing from 1 for the life of the process. */
  seq: number;
  origin: Origin;
  data: Payload;
  /** Payload size in bytes (UTF-8 for text), measured once at publish. */
  size: number;
}

/** Size of a payload in bytes (UTF-8 for text). */
export function payloadBytes(data: Payload): number {
  return typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
}
