import type { Context } from "hono";
import { AppError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

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
    if (err instanceof AppError) {
      if (err.cause) logger.warn("request failed", { path: c.req.path, status: err.status, cause: err.cause });
      return c.json(errorBody(err.status, err.message, err.data), err.status as 400);
    }
    logger.error("unhandled error", { method: c.req.method, path: c.req.path, error: err, stack: err.stack });
    return c.json(errorBody(500, "internal error; the server log has the details"), 500);
  };

/** 404 for routes that do not exist, naming the route. */
export function handleNotFound(c: Context) {
  return c.json(errorBody(404, `no route ${c.req.method} ${c.req.path}; see the README for the API`), 404);
}
