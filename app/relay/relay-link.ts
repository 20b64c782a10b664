import type { Message } from "../core/message.ts";

/**
 * The websocket subprotocol by which two Switchyards agree on store and
 * forward. A resume destination offers it beside "null"; a Switchyard that
 * knows it answers it, an older Switchyard answers "null", and practable's
 * relay answers none, so only a remote that speaks it is ever sent its frames.
 *
 *   sender -> remote  {"relay":{"node":"<sender node id>","stream":"<sender's stream>"}}
 *   remote -> sender  {"relay":{"after":N}}  the highest seq of that sender's stream the remote holds durably
 *   sender -> remote  {"id":"<seq>","data":"…"} or {"id":"<seq>","base64":"…"}  (the envelopes of ?ack=id), seqs increasing
 *   remote -> sender  {"ack":{"seq","count","ids":[…]}} after the group commit (write and fsync) that holds them
 *   remote -> sender  {"error":{"message"}} then close 1013 when the log could not store them
 */
export const RELAY_PROTOCOL = "switchyard-relay.1";

/** The subprotocols a resume destination offers, in order. */
export const RESUME_OFFER = ["null", RELAY_PROTOCOL];

/** The first frame of a sender: who it is. */
export function helloFrame(node: string, stream: string): string {
  return JSON.stringify({ relay: { node, stream } });
}

/** One message as the relay link carries it: the `?ack=id` envelope with the sender's seq as its id. */
export function linkFrame(m: Message): string {
  return typeof m.data === "string"
    ? `{"id":"${m.seq}","data":${JSON.stringify(m.data)}}`
    : `{"id":"${m.seq}","base64":"${Buffer.from(m.data).toString("base64")}"}`;
}

/** Node ids: what a sender may call itself (it names the origin of what it sends). */
export const NODE_ID = /^[A-Za-z0-9-]{1,64}$/;

/** A new node id for this data dir. */
export function newNodeId(): string {
  return crypto.randomUUID();
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
