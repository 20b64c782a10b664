import { DURATION_RULE, parseDurationSeconds } from "../core/duration.ts";
import { MAX_TOKEN_TTL_SECONDS, SCOPES, signStreamToken, type Scope } from "./stream-token.ts";

/**
 * Tokens for a range of devices, the way practable's `configure <name> <from> <to> <accessURL>`
 * makes them: for each N, a topic `<prefix>N-<kind>`, an access URL
 * `<accessURL>/session/<prefix>N-<kind>` and a token for that topic with audience
 * `<accessURL>`. One module for the admin page and `switchyard token --prefix`.
 */
export interface TokenBatchRequest {
  prefix: string;
  from: number;
  to: number;
  kind: string;
  accessUrl: string;
  scopes: Scope[];
  ttlSeconds: number;
  /** The booking_id claim (practable's `relay token` default: relay-token-cli). */
  bookingId: string;
}

/** practable's `relay token` default booking id, which its relay needs to find in a token. */
export const DEFAULT_BOOKING_ID = "relay-token-cli";
/** The order practable's `relay token` lists scopes in. */
const PRACTABLE_SCOPE_ORDER = ["relay:admin", "write", "read"];

/** One device's access URL and token. */
export interface DeviceToken {
  /** The device's local stream, e.g. spin30. */
  device: string;
  /** The relay topic, e.g. spin30-log. */
  topic: string;
  access: string;
  token: string;
  expires: string;
}

/** Most devices in one batch. */
export const MAX_BATCH = 1000;
// Letters, digits and "-": the names become destination ids ([a-zA-Z0-9-/]) and file names.
const NAME = /^[A-Za-z0-9-]{1,40}$/;

/** The raw fields of a batch as typed (form or flags). */
export interface TokenBatchInput {
  prefix?: string;
  from?: string;
  to?: string;
  kind?: string;
  access_url?: string;
  scopes?: string[];
  ttl?: string;
  booking_id?: string;
}

/** Validates typed fields; returns the request, or the problem with each field and what it allows. */
export function parseTokenBatch(input: TokenBatchInput): { request: TokenBatchRequest } | { errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const prefix = (input.prefix ?? "").trim();
  if (!NAME.test(prefix)) errors.prefix = "allowed: 1 to 40 characters A-Z a-z 0-9 -, e.g. spin";
  const kind = (input.kind ?? "").trim();
  if (!NAME.test(kind)) errors.kind = "allowed: 1 to 40 characters A-Z a-z 0-9 -, e.g. log, data, video";
  const num = (key: "from" | "to") => {
    const text = (input[key] ?? "").trim();
    if (!/^\d{1,9}$/.test(text)) {
      errors[key] = "allowed: a whole number from 0 to 999999999";
      return 0;
    }
    return Number(text);
  };
  const from = num("from");
  const to = num("to");
  if (!errors.from && !errors.to) {
    if (to < from) errors.to = `must be at least from (${from})`;
    else if (to - from + 1 > MAX_BATCH) errors.to = `at most ${MAX_BATCH} devices in one batch (from ${from}: up to ${from + MAX_BATCH - 1})`;
  }
  const accessUrl = (input.access_url ?? "").trim().replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(accessUrl)) errors.access_url = "allowed: the relay's access URL, http:// or https://, e.g. https://relay.example.org/access";
  const scopes = (input.scopes ?? ["read", "write"]).map((s) => s.trim()).filter(Boolean);
  if (scopes.length === 0 || scopes.some((s) => !(SCOPES as readonly string[]).includes(s))) errors.scopes = `allowed: one or more of ${SCOPES.join(", ")}`;
  const ttl = parseDurationSeconds((input.ttl ?? "").trim() || "365d");
  if (ttl === null || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) errors.ttl = `allowed: ${DURATION_RULE}, at least 1s, at most 100y`;
  const bookingId = (input.booking_id ?? "").trim() || DEFAULT_BOOKING_ID;
  if (bookingId.length > 256 || /[\u0000-\u001f\u007f]/.test(bookingId)) errors.booking_id = "allowed: 1 to 256 printable characters (default relay-token-cli, as practable's relay token)";
  if (Object.keys(errors).length > 0) return { errors };
  return { request: { prefix, from, to, kind, accessUrl, scopes: scopes as Scope[], ttlSeconds: ttl!, bookingId } };
}

const rank = (scope: string) => {
  const i = PRACTABLE_SCOPE_ORDER.indexOf(scope);
  return i < 0 ? PRACTABLE_SCOPE_ORDER.length : i;
};

/** Signs one token per device of the range with `secret`. */
export async function generateTokenBatch(secret: string, req: TokenBatchRequest, nowSeconds = Date.now() / 1000): Promise<DeviceToken[]> {
  const out: DeviceToken[] = [];
  for (let n = req.from; n <= req.to; n++) {
    const device = `${req.prefix}${n}`;
    const topic = `${device}-${req.kind}`;
    // Claims and scope order as practable's `relay token` writes them, so the files work on a practable relay too.
    const scopes = [...req.scopes].sort((a, b) => rank(a) - rank(b));
    const token = await signStreamToken(secret, { topic, scopes, ttlSeconds: req.ttlSeconds, audience: req.accessUrl, bookingId: req.bookingId ?? DEFAULT_BOOKING_ID, nowSeconds });
    out.push({ device, topic, access: `${req.accessUrl}/session/${topic}`, token, expires: new Date((Math.floor(nowSeconds) - 1 + req.ttlSeconds) * 1000).toISOString() });
  }
  return out;
}

/** The files the boot scripts read: `<kind>.access.<device>` and `<kind>.token.<device>`, one line each. */
export function tokenFiles(kind: string, tokens: DeviceToken[]): { name: string; content: string }[] {
  return tokens.flatMap((t) => [
    { name: `${kind}.access.${t.device}`, content: t.access + "\n" },
    { name: `${kind}.token.${t.device}`, content: t.token + "\n" },
  ]);
}

/** A destination rule that relays a device's stream to its relay session (practable's boot-script rule). */
export function destinationRuleFor(kind: string, t: DeviceToken) {
  return { id: `${t.device}-${kind}`, stream: t.device, destination: t.access, token: t.token, file: "" };
}
