import { badRequest, tooLarge } from "../core/errors.ts";
import { BATCH_BODY_LIMIT, batchForm } from "../sources/http/publish-batch.ts";

/** Most bytes a JSON request body of the API may have. */
export const JSON_BODY_LIMIT = 1024 * 1024;
/** Most bytes of the sign-in form: a password and a `next` path fit many times over. */
export const SIGN_IN_BODY_LIMIT = 8 * 1024;
/** Most bytes of the other admin forms (settings, tokens, destinations, the SQL console). */
export const ADMIN_FORM_LIMIT = 64 * 1024;

/** How many bytes a request body may have, and the rule that says so (named in the 413). */
export interface BodyLimit {
  bytes: number;
  why: string;
}

/**
 * The body limit of a route, or null for `POST /ts/{stream}`: a long-lived
 * stream that is never held whole (each chunk is published as it comes, split
 * at `max_message_bytes`). Every other route has a limit that fits what it
 * reads; routes that read no body get the JSON limit, so nothing is unbounded.
 */
export function bodyLimitFor(method: string, path: string, maxMessageBytes: number, contentType?: string | null): BodyLimit | null {
  if (method === "POST" && path.startsWith("/ts/")) return null;
  if (path === "/admin/login") return { bytes: SIGN_IN_BODY_LIMIT, why: "the sign-in form" };
  // Form encoding may triple a message's bytes (%XX), so the publish form allows for it.
  if (path === "/admin/streams/publish") return { bytes: 3 * maxMessageBytes + ADMIN_FORM_LIMIT, why: "3 × max_message_bytes + 64 KiB for the publish form" };
  if (path.startsWith("/admin")) return { bytes: ADMIN_FORM_LIMIT, why: "admin forms" };
  if (method === "POST" && path.startsWith("/api/streams/") && path.endsWith("/messages")) {
    return batchForm(contentType) ? { bytes: BATCH_BODY_LIMIT, why: "a publish batch: 16 MiB; split larger batches" } : { bytes: maxMessageBytes, why: "setting max_message_bytes" };
  }
  return { bytes: JSON_BODY_LIMIT, why: "JSON bodies of the API" };
}

/** The 413 message for a body of `n` bytes (or more) over `limit`. */
export function tooLargeMessage(n: number, limit: BodyLimit, more = false): string {
  return `body of ${more ? "more than " : ""}${n} bytes is larger than the limit of ${limit.bytes} bytes (${limit.why})`;
}

/**
 * Reads a request body, refusing (413, with the limit) as soon as it passes
 * `limit` bytes: a declared Content-Length over it is refused before a byte is
 * read, and a chunked body with no Content-Length is never read whole first.
 */
export async function readBodyCapped(req: Request, limit: number, why = "setting max_message_bytes"): Promise<Uint8Array> {
  const rule = { bytes: limit, why };
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge(tooLargeMessage(declared, rule), { limit });
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of bodyChunks(req)) {
    total += chunk.byteLength;
    if (total > limit) throw tooLarge(tooLargeMessage(limit, rule, true), { limit });
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : new Uint8Array(Buffer.concat(chunks, total));
}

/**
 * The chunks of a request body as they arrive. A body cut short (the client
 * closed the connection, or its chunked framing broke) is the client's fault:
 * a 400 saying so, not an unhandled error.
 */
export async function* bodyChunks(req: Request): AsyncGenerator<Uint8Array> {
  if (!req.body) return;
  const reader = req.body.getReader();
  try {
    for (;;) {
      let next;
      try {
        next = await reader.read();
      } catch {
        throw badRequest("the request body ended early: the connection closed, or the chunked encoding broke, before the whole body arrived");
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Reads a JSON object body (at most 1 MiB). Not JSON, or not an object: 400
 * saying to send `example`. An empty body is `empty`, where the route allows one.
 */
export async function readJsonObject(req: Request, example: string, empty?: Record<string, unknown>): Promise<Record<string, unknown>> {
  const text = new TextDecoder().decode(await readBodyCapped(req, JSON_BODY_LIMIT, "JSON bodies of the API"));
  if (empty && text.trim() === "") return empty;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badRequest(`the body is not JSON; send ${example}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest(`the body must be a JSON object; send ${example}`);
  return value as Record<string, unknown>;
}

/** The fields of a form: every value of each name, in order. */
export type FormValues = Map<string, string[]>;

/**
 * Reads a form body (urlencoded or multipart) of at most `limit` bytes; file
 * parts are ignored. Any other content type reads as an empty form, as Hono's
 * parseBody does. A multipart body that does not parse is a 400.
 */
export async function readFormCapped(req: Request, limit: BodyLimit): Promise<FormValues> {
  const bytes = await readBodyCapped(req, limit.bytes, limit.why);
  const header = req.headers.get("content-type") ?? "";
  const type = header.toLowerCase();
  const out: FormValues = new Map();
  const add = (k: string, v: string) => out.set(k, [...(out.get(k) ?? []), v]);
  if (type.startsWith("application/x-www-form-urlencoded")) {
    for (const [k, v] of new URLSearchParams(new TextDecoder().decode(bytes))) add(k, v);
  } else if (type.startsWith("multipart/form-data")) {
    let form: Awaited<ReturnType<Response["formData"]>>;
    try {
      form = await new Response(bytes, { headers: { "content-type": header } }).formData();
    } catch {
      throw badRequest("the form body is not valid multipart/form-data; send the form as a browser does");
    }
    form.forEach((v, k) => {
      if (typeof v === "string") add(k, v);
    });
  }
  return out;
}
