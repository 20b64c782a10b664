import type { Context } from "hono";
import { AppError, badRequest, PERCENT_ENCODING_RULE } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { ErrorPage, Notice } from "../../views/layout.tsx";
import { html } from "./ui/support.ts";

/** The JSON body of every API error. */
export function errorBody(status: number, message: string, data?: Record<string, unknown>) {
  return { error: { status, message, ...(data ? { data } : {}) } };
}

/**
 * The app's one error handler: an AppError becomes its status and message; anything
 * else is a 500 whose cause goes to the log, never to the client.
 */
export const handleError = (logger: Logger) =>
  function handleError(err: Error, c: Context) {
    // decodeURIComponent's URIError is always bad input; the request screen catches most before routing.
    if (err instanceof URIError) err = badRequest(`the request is not valid percent-encoding: ${PERCENT_ENCODING_RULE}`);
    if (err instanceof AppError) {
      if (err.status === 503 || err.status === 429) c.header("Retry-After", "2");
      if (err.cause) logger.warn("request failed", { path: c.req.path, status: err.status, cause: err.cause });
      // The rest of a body over the limit is never read: the connection ends after this answer.
      if (err.status === 413) c.header("Connection", "close");
      if (c.req.path.startsWith("/admin")) return adminError(c, err.status, err.message);
      return c.json(errorBody(err.status, err.message, err.data), err.status as 400);
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
