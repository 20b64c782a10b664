/** What a NATS server address may look like, for error messages. */
export const NATS_URL_RULE = "nats://host:port, tls://host:port or host:port";

/** A NATS server address in its normal form (`nats://host:port`), or null when it is not one. */
export function normalizeNatsUrl(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text.includes("://") ? text : `nats://${text}`);
  } catch {
    return null;
  }
  if (!["nats:", "tls:"].includes(url.protocol) || url.hostname === "") return null;
  return url.href.replace(/\/$/, "");
}
