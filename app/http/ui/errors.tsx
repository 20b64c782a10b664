import type { Context } from "hono";
import type { Logger } from "../../core/logger.ts";
import { ErrorPage, Notice } from "../../../views/layout.tsx";
import { answerable, INTERNAL, logUnhandled } from "../errors.ts";
import { html } from "./support.ts";

/** Admin UI errors are HTML: a notice for htmx to swap in, else a page. */
async function adminError(c: Context, status: number, message: string) {
  const el = c.req.header("hx-request") === "true" ? <Notice kind="bad" text={message} /> : <ErrorPage status={status} message={message} />;
  return c.html(await html(el), status as 400);
}

/** The admin UI's error handler: as the API's (same statuses, same logging), answered in HTML. */
export const handleAdminError = (logger: Logger) =>
  function handleAdminError(err: Error, c: Context) {
    const known = answerable(err, c, logger);
    if (known) return adminError(c, known.status, known.message);
    logUnhandled(err, c, logger);
    return adminError(c, 500, INTERNAL);
  };

/** 404 for admin pages that do not exist, pointing to the menu. */
export function adminNotFound(c: Context) {
  return adminError(c, 404, `no page ${c.req.path}; the menu lists the pages`);
}
