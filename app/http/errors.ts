import type { Context } from "hono";
import { AppError, badRequest, InvalidInput, PERCENT_ENCODING_RULE } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

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
 * The API's error handler: an AppError (or a domain error, see toAppError)
 * becomes its status and a JSON body; anything else is a 500 whose cause goes to
 * the log, never to the client. The admin UI has its own (ui/errors.tsx).
 */
export const handleError = (logger: Logger) =>
  function handleError(err: Error, c: Context) {
    const known = answerable(err, c, logger);
    if (known) return c.json(errorBody(known.status, known.message, known.data), known.status as 400);
    logUnhandled(err, c, logger);
    return c.json(errorBody(500, INTERNAL), 500);
  };

/** What the client is told of an error it did not cause. */
export const INTERNAL = "internal error; the server log has the details";

/**
 * The AppError to answer for `err` (null: a 500), after what every answer
 * needs: its cause logged, Retry-After on 503 and 429, and the connection
 * closed after a 413 (the rest of a body over the limit is never read).
 */
export function answerable(err: Error, c: Context, logger: Logger): AppError | null {
  const known = toAppError(err);
  if (!known) return null;
  if (known.status === 503 || known.status === 429) c.header("Retry-After", "2");
  if (known.cause) logger.warn("request failed", { path: c.req.path, status: known.status, cause: known.cause });
  if (known.status === 413) c.header("Connection", "close");
  return known;
}

/** Logs an error no handler expected, with where it was thrown. */
export function logUnhandled(err: Error, c: Context, logger: Logger): void {
  logger.error("unhandled error", { method: c.req.method, path: c.req.path, error: err, ...stackTop(err) });
}

/** 404 for API routes that do not exist, naming the route. */
export function handleNotFound(c: Context) {
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
    return Response.json(errorBody(500, INTERNAL), { status: 500 });
  };
}

/** `{at}`: the first frames of a stack on one line, enough to find the place and short enough for a log line; nothing when there are none. */
export function stackTop(err: Error, frames = 3): { at?: string } {
  const at = (err.stack ?? "").split("\n").filter((l) => l.trim().startsWith("at ")).slice(0, frames).map((l) => l.trim().slice(3)).join(" < ");
  return at ? { at } : {};
}
