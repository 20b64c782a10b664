import type { MiddlewareHandler } from "hono";
import { FallbackPage } from "../../../views/layout.tsx";
import type { HttpEnv } from "../deps.ts";
import { html, isHtmx } from "./support.ts";

/** Where "back" goes: the page the form was on, when it is one of ours. */
function backTo(referer: string | undefined, host: string | undefined): string {
  if (!referer) return "/admin";
  try {
    const u = new URL(referer);
    return u.host === host && u.pathname.startsWith("/admin") ? u.pathname + u.search : "/admin";
  } catch {
    return "/admin";
  }
}

/**
 * Forms answer with the fragment htmx swaps in. A browser without JavaScript
 * posts the same form the plain way: it gets that fragment inside a whole page,
 * with a link back.
 */
export const withoutJavaScript: MiddlewareHandler<HttpEnv> = async (c, next) => {
  await next();
  if (c.req.method !== "POST" || isHtmx(c)) return;
  if (!(c.res.headers.get("content-type") ?? "").startsWith("text/html")) return;
  const fragment = await c.res.clone().text();
  if (/^\s*<!DOCTYPE/i.test(fragment)) return;
  const headers = new Headers(c.res.headers);
  headers.delete("content-length");
  const page = await html(<FallbackPage fragment={fragment} back={backTo(c.req.header("referer"), c.req.header("host") ?? new URL(c.req.url).host)} status={c.res.status} />);
  c.res = new Response(page, { status: c.res.status, headers });
};
