import { isAbsolute, relative, resolve } from "node:path";
import { InvalidInput } from "../core/errors.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { redactDestination } from "./secret-url.ts";
import { RECORD_FORMATS, type RecordFormat } from "./recorder.ts";

/** How a destination sends: a websocket relay session (practable) or HTTP POSTs (webhook). */
export const DESTINATION_KINDS = ["websocket", "webhook"] as const;
export type DestinationKind = (typeof DESTINATION_KINDS)[number];

/** A destination rule: practable's fields (id, stream, destination, token, file) plus ours. */
export interface DestinationRule {
  id: string;
  stream: string;
  destination: string;
  token: string;
  file: string;
  kind: DestinationKind;
  /** Webhook: most messages per POST (1: the body is the message itself). */
  batch: number;
  /** How `file` holds messages: raw bytes back to back (practable's way, the default) or one per line. */
  record_format: RecordFormat;
  /**
   * Store and forward: keep a cursor (the last seq the remote has taken) and,
   * after the link was down, send the backlog from the log in order, then live.
   */
  resume: boolean;
}

const ID = /^[a-zA-Z0-9\-/]+$/;
const FIELDS = ["id", "stream", "destination", "token", "file", "kind", "batch", "record_format", "resume"];
/** Fields a rule's view carries that are not part of the rule: ignored on input, so a rule read can be posted back. */
const READ_ONLY = ["status", "warnings"];
/** Ids the API's own paths use: `all` lists the rules and `deleteAll` deletes them (as in practable). */
const RESERVED_IDS = ["all", "deleteAll"];

/** What a rule's token looks like in any response: never the token itself. */
export const REDACTED = "<redacted>";

/** What parseRule may use beyond the body. */
export interface ParseRuleOptions {
  /** The stored token of a rule id, for a posted `token` equal to the redaction marker. */
  storedToken?: (id: string) => string | undefined;
  /** Receives a line for each field that was ignored (unknown fields, as practable ignores them). */
  warnings?: string[];
}

/**
 * Validates a posted rule. Trims a leading "/" from `stream` (as practable does);
 * `file` must stay inside `recordsDir`. Unknown fields are ignored (with a
 * warning), read-only fields of a rule's view (`status`) silently, and a token
 * equal to the redaction marker means "keep the stored token", so a rule read
 * with GET can be posted back as it is. Throws InvalidInput naming every bad
 * field and what it allows.
 */
export function parseRule(body: unknown, recordsDir: string, opts: ParseRuleOptions = {}): DestinationRule {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new InvalidInput('the body must be a JSON object like {"id":"0","stream":"spin30","destination":"wss://relay.example.org/session/spin30","token":""}');
  }
  const b = body as Record<string, unknown>;
  const errors: Record<string, string> = {};
  const unknown = Object.keys(b).filter((k) => !FIELDS.includes(k) && !READ_ONLY.includes(k));
  if (unknown.length > 0) opts.warnings?.push(`ignored unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")}; a rule has: ${FIELDS.join(", ")}`);
  const str = (k: string, fallback = "") => {
    const v = b[k] ?? fallback;
    if (typeof v !== "string") { errors[k] = "must be a string"; return ""; }
    return v;
  };
  const id = str("id");
  if (!ID.test(id)) errors.id = `${JSON.stringify(id)} is not valid; allowed: one or more of [a-zA-Z0-9-/]`;
  else if (RESERVED_IDS.includes(id)) errors.id = `${JSON.stringify(id)} is reserved (GET /api/destinations/all lists the rules, DELETE /api/destinations/deleteAll deletes them); choose another id`;
  const stream = str("stream").replace(/^\/+/, "");
  const streamProblem = streamNameProblem(stream);
  if (streamProblem && !errors.stream) errors.stream = streamProblem;
  const kind = str("kind", "websocket") as DestinationKind;
  if (!DESTINATION_KINDS.includes(kind)) errors.kind = `${JSON.stringify(kind)} is not valid; allowed: ${DESTINATION_KINDS.join(", ")}`;
  let token = str("token");
  if (token === REDACTED && !errors.id) {
    const stored = opts.storedToken?.(id);
    if (stored) token = stored;
    else errors.token = `${REDACTED} stands for the stored token, but rule ${JSON.stringify(id)} has none; send the token itself, or "" for none`;
  }
  const destination = str("destination");
  let url: URL | null = null;
  try { url = new URL(destination); } catch { /* reported below */ }
  const scheme = url?.protocol.replace(/:$/, "");
  if (!url) errors.destination = `${JSON.stringify(destination)} is not a URL`;
  else if (kind === "webhook" && scheme !== "http" && scheme !== "https") errors.destination = "a webhook destination must be an http:// or https:// URL";
  else if (kind === "websocket" && token === "" && scheme !== "ws" && scheme !== "wss") errors.destination = "without a token the destination is dialled directly, so it must be a ws:// or wss:// URL (with a token: the relay's http(s):// access URL)";
  else if (kind === "websocket" && token !== "" && scheme !== "http" && scheme !== "https") errors.destination = "with a token the destination is the relay's access URL: http:// or https://";
  const batchValue = b.batch ?? 1;
  if (typeof batchValue !== "number" || !Number.isInteger(batchValue) || batchValue < 1 || batchValue > 10_000) errors.batch = "allowed: a whole number from 1 to 10000";
  const recordFormat = str("record_format", "raw") as RecordFormat;
  if (!RECORD_FORMATS.includes(recordFormat)) errors.record_format = `${JSON.stringify(recordFormat)} is not valid; allowed: ${RECORD_FORMATS.join(", ")}`;
  const resume = b.resume ?? false;
  if (typeof resume !== "boolean") errors.resume = `${JSON.stringify(resume)} is not valid; allowed: true (store and forward: a cursor, the backlog sent from the log after an outage) or false (the default: messages go out only while connected)`;
  else if (resume && kind === "webhook") errors.resume = "applies to websocket destinations only (a webhook destination already retries its queue in order)";
  const fileText = str("file");
  let file = "";
  if (fileText !== "") {
    const full = resolve(recordsDir, fileText);
    const rel = relative(recordsDir, full);
    if (rel.startsWith("..") || isAbsolute(rel)) errors.file = `must be a file name inside ${recordsDir} (relative names are taken from there)`;
    else file = full;
  }
  if (Object.keys(errors).length > 0) {
    throw new InvalidInput(`invalid destination rule: ${Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("; ")}`, errors);
  }
  return { id, stream, destination, token, file, kind, batch: batchValue as number, record_format: recordFormat, resume: resume === true };
}

/** The rule as responses show it: the token redacted, and the secrets a destination URL may hold. */
export function publicRule(rule: DestinationRule) {
  return { ...rule, destination: redactDestination(rule.destination, rule.kind), token: rule.token ? REDACTED : "" };
}
