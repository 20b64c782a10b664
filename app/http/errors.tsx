import type { Context } from "hono";
import { AppError } from "../core/errors.ts";
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
    if (err instanceof AppError) {
      if (err.status === 503 || err.status === 429) c.header("Retry-After", "2");
      if (err.cause) logger.warn("request failed", { path: c.req.path, status: err.status, cause: err.cause });
      if (c.req.path.startsWith("/admin")) return adminError(c, err.status, err.message);
      return c.json(errorBody(err.status, err.message, err.data), err.status as 400);
    }
    logger.error("unhandled error", { method: c.req.method, path: c.req.path, error: err, stack: err.stack });
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
