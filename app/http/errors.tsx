import type { Context } from "hono";
import { AppError, badRequest, InvalidInput, PERCENT_ENCODING_RULE } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { ErrorPage, Notice } from "../../views/layout.tsx";
import { html } from "./ui/support.ts";

/** The JSON body of every API error. */
export function errorBody(status: number, message: string, data?: Record<string, unknown>) {
  return { error: { status, message, ...(data ? { data } : {}) } };
}

/**
 * The HTTP answer to an error of the domain: InvalidInput (a setting, a rule)
 * is a 400 naming its fields; an AppError stays as it is; anything else is not
 * the client's fault (null).
 */
export function toAppError(err: unknown): AppError | null {
  if (err instanceof AppError) return err;
  if (err instanceof InvalidInput) return badRequest(err.message, err.fields ? { fields: err.fields } : undefined);
  // decodeURIComponent's URIError is always bad input; the request screen catches most before routing.
  if (err instanceof URIError) return badRequest(`the request is not valid percent-encoding: ${PERCENT_ENCODING_RULE}`);
  return null;
}

/** Bad input, as a form shows it: the message and the problem of each field; null for any other error. */
export function badInput(err: unknown): { message: string; fields: Record<string, string> } | null {
  const e = toAppError(err);
  if (!e || e.status !== 400) return null;
  return { message: e.message, fields: (e.data?.fields as Record<string, string> | undefined) ?? {} };
}

/**
 * The app's one error handler: an AppError (or a domain error, see toAppError) becomes its status and message; anything
 * else is a 500 whose cause goes to the log, never to the client.
 */
export const handleError = (logger: Logger) =>
  function handleError(err: Error, c: Context) {
    const known = toAppError(err);
    if (known) {
      if (known.status === 503 || known.status === 429) c.header("Retry-After", "2");
      if (known.cause) logger.warn("request failed", { path: c.req.path, status: known.status, cause: known.cause });
      // The rest of a body over the limit is never read: the connection ends after this answer.
      if (known.status === 413) c.header("Connection", "close");
      if (c.req.path.startsWith("/admin")) return adminError(c, known.status, known.message);
      return c.json(errorBody(known.status, known.message, known.data), known.status as 400);
    }
    logger.error("unhandled error", { method: c.req.method, path: c.req.path, error: err, ...stackTop(err) });
    if (c.req.path.startsWith("/admin")) return adminError(c, 500, "internal error; the server log has the details");
    return c.json(errorBody(500, "internal error; the server log has the details"), 500);
  };

/** Admin UI errors are HTML: a notice for htmx to swap in, else a page. */
async function adminError(c: Context, status: number, message: string) {
  const el = c.req.header("hx-request") === "true" ? <Notice kind="bad" text={message} /> : <ErrorPage status={status} message={message} />;
  return c.html(await html(el), status as 400);
}

/** 404 for routes that do not exist, naming the route. */
export function handleNotFound(c: Context) {
  if (c.req.path.startsWith("/admin")) return adminError(c, 404, `no page ${c.req.path}; the menu lists the pages`);
  return c.json(errorBody(404, `no route ${c.req.method} ${c.req.path}; see the README for the API`), 404);
}

/**
 * Bun's last-resort error handler, for what throws outside the Hono app (the
 * upgrade paths): a short JSON 500 and one log line with the error and where it
 * was thrown. With it, and development off, Bun never serves its error page or source.
 */
export function lastResortError(logger: Logger) {
  return function lastResortError(err: Error): Response {
    logger.error("unhandled error", { error: err, ...stackTop(err) });
    return Response.json(errorBody(500, "internal error; the server log has the details"), { status: 500 });
  };
}

/** `{at}`: the first frames of a stack on one line, enough to find the place and short enough for a log line; nothing when there are none. */
export function stackTop(err: Error, frames = 3): { at?: string } {
  const at = (err.stack ?? "").split("\n").filter((l) => l.trim().startsWith("at ")).slice(0, frames).map((l) => l.trim().slice(3)).join(" < ");
  return at ? { at } : {};
}
