import type { Message } from "../core/message.ts";

/**
 * The websocket subprotocol by which two Switchyards agree on store and
 * forward. A resume destination offers it beside "null"; a Switchyard that
 * knows it answers it, an older Switchyard answers "null", and practable's
 * relay answers none, so only a remote that speaks it is ever sent its frames.
 *
 *   sender -> remote  {"relay":{"key":"<sender node key>","stream":"<sender's stream>"}}
 *   remote -> sender  {"relay":{"after":N}}  the highest seq of that sender's stream the remote holds durably
 *   sender -> remote  {"id":"<seq>","data":"…"} or {"id":"<seq>","base64":"…"}  (the envelopes of ?ack=id), seqs increasing
 *   remote -> sender  {"ack":{"seq","count","ids":[…]}} after the group commit (write and fsync) that holds them
 *   remote -> sender  {"error":{"message"}} then close 1013 when the log could not store them
 */
export const RELAY_PROTOCOL = "switchyard-relay.1";

/** The subprotocols a resume destination offers, in order. */
export const RESUME_OFFER = ["null", RELAY_PROTOCOL];

/** The first frame of a sender: who it is (its node key, a secret of its data dir) and which of its streams it sends. */
export function helloFrame(key: string, stream: string): string {
  return JSON.stringify({ relay: { key, stream } });
}

/** One message as the relay link carries it: the `?ack=id` envelope with the sender's seq as its id. */
export function linkFrame(m: Message): string {
  return typeof m.data === "string"
    ? `{"id":"${m.seq}","data":${JSON.stringify(m.data)}}`
    : `{"id":"${m.seq}","base64":"${Buffer.from(m.data).toString("base64")}"}`;
}

/** What a node key looks like: 32 to 128 of A-Z a-z 0-9 - _. */
export const NODE_KEY = /^[A-Za-z0-9_-]{32,128}$/;

/** A new node key for this data dir (256 random bits, hex). */
export function newNodeKey(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
}

/**
 * The node id a key stands for: the first 32 hex digits of its SHA-256. Only
 * the id is ever stored or shown (in origins), so knowing it (anyone who reads
 * the stream's origins does) does not let another publisher speak for the
 * sender and claim seqs it never sent.
 */
export function nodeIdOf(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex").slice(0, 32);
}

/**
 * The origin a relayed message is stored with on the remote: the sender's node,
 * stream and seq. It is in the log with the message itself (written by the same
 * group commit), so after a crash or restart of the remote the log alone says
 * how far each sender got.
 */
export function relayedOrigin(sender: string, seq: number): string {
  return `${originPrefix(sender)}${seq}`;
}

/** What every origin of one sender starts with. */
export function originPrefix(sender: string): string {
  return `resume:${sender}#`;
}
