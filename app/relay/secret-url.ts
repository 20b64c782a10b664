import { InvalidInput } from "../core/errors.ts";
import type { DestinationKind, DestinationRule } from "./rule.ts";

/**
 * Destination URLs can hold secrets: a user:password@, a webhook's secret path
 * (https://hooks.example.org/hooks/catch/123/abcdef), a ?key= in the query. They are
 * shown like tokens: redacted in every response, page, status and log line. What
 * stays is what an operator needs to tell destinations apart: the scheme, the
 * host, and for relays (whose paths are topics, not secrets) the path.
 */

const MARK = "<redacted>";

/** A destination URL as responses, pages and logs show it. */
export function redactDestination(url: string, kind: DestinationKind): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return MARK;
  }
  const userinfo = u.username || u.password ? `${MARK}@` : "";
  let path = u.pathname;
  if (kind === "webhook" && path !== "/" && path !== "") {
    // Keep a first segment that is followed by more (".../hooks/<redacted>"); a lone segment may be the secret itself.
    const segments = path.split("/").filter(Boolean);
    path = segments.length > 1 ? `/${segments[0]}/${MARK}` : `/${MARK}`;
  }
  const query = u.search ? `?${MARK}` : "";
  return `${u.protocol}//${userinfo}${u.host}${path}${query}`;
}

/** `text` (an error message) with the rule's destination URL, in any spelling fetch may use, redacted. */
export function scrubDestination(text: string, rule: Pick<DestinationRule, "destination" | "kind">): string {
  const shown = redactDestination(rule.destination, rule.kind);
  let out = text.replaceAll(rule.destination, shown);
  try {
    const u = new URL(rule.destination);
    out = out.replaceAll(u.href, shown);
    // A password long enough not to match ordinary words, in case a message quotes it alone.
    if (u.password.length >= 4) out = out.replaceAll(u.password, MARK).replaceAll(decodeURIComponent(u.password), MARK);
  } catch { /* not a URL: nothing more to find */ }
  return out;
}

/**
 * A rule read back and posted again carries the redacted URL: that means "keep
 * the stored one" (as the token marker does), not a new URL. Returns the body
 * with the stored URL put back when the posted one is exactly its redacted form;
 * any other URL with the marker in it is refused (400), never stored.
 */
export function restoreRedactedDestination<T extends Record<string, unknown>>(body: T, stored: Pick<DestinationRule, "destination" | "kind"> | undefined): T {
  if (typeof body.destination !== "string") return body;
  if (stored && body.destination !== stored.destination && body.destination === redactDestination(stored.destination, stored.kind)) {
    return { ...body, destination: stored.destination };
  }
  if (body.destination.includes(MARK) || body.destination.includes(encodeURIComponent(MARK))) {
    throw new InvalidInput(`invalid destination rule: destination: ${JSON.stringify(body.destination)} holds the redaction marker ${MARK} but is not this rule's stored URL; send the full URL`, { destination: "holds the redaction marker" });
  }
  return body;
}
