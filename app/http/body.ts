import { badRequest, tooLarge } from "../core/errors.ts";

/**
 * Reads a request body, refusing (413, with the limit) as soon as it passes
 * `limit` bytes: a chunked body with no Content-Length is never read whole first.
 */
export async function readBodyCapped(req: Request, limit: number, why = "setting max_message_bytes"): Promise<Uint8Array> {
  const message = (n: number) => `body of ${n} bytes is larger than the limit of ${limit} bytes (${why})`;
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge(message(declared), { limit });
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body) {
    total += chunk.byteLength;
    if (total > limit) throw tooLarge(message(total), { limit });
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : new Uint8Array(Buffer.concat(chunks, total));
}

/** Most bytes a JSON request body of the API may have. */
export const JSON_BODY_LIMIT = 1024 * 1024;

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
