import type { Context, Hono, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { verifyAdminPassword, INITIAL_PASSWORD_FILE } from "../../auth/admin-account.ts";
import { SESSION_COOKIE, SESSION_SECONDS } from "../../auth/admin-session.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ASSETS, ASSET_VERSION } from "../../../views/assets.ts";
import { LoginPage } from "../../../views/login.tsx";
import { hasAdminSession } from "../admin.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { clientIdentity } from "../stream-access.ts";
import { formFields, isHtmx } from "./support.ts";

/** A `next` target after sign-in: only paths of the admin UI. */
function safeNext(next: string | undefined): string {
  return next && /^\/admin(\/[^\s\\]*)?(\?\S*)?$/.test(next) && !next.startsWith("//") ? next : "/admin";
}

/** True when the browser reached us over TLS (directly, or through a proxy that says so). */
function overTls(c: Context<HttpEnv>): boolean {
  return new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https";
}

/** Refuses admin pages without a session: a sign-in redirect for pages, 401 + HX-Redirect for htmx. */
export const requireSession = (deps: HttpDeps): MiddlewareHandler<HttpEnv> =>
  async function requireSession(c, next) {
    if (hasAdminSession(c, deps)) return next();
    const url = new URL(c.req.url);
    const login = `/admin/login?next=${encodeURIComponent(url.pathname + url.search)}`;
    if (isHtmx(c)) return c.body(null, 401, { "HX-Redirect": login });
    if (c.req.method === "GET") return c.redirect(login, 303);
    return c.text("sign in first: this admin form needs a session (open /admin/login)", 401);
  };

/** Binds /admin/assets/*, /admin/login and /admin/logout: what is reachable without a session. */
export function bindAuthRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/admin/assets/:name", (c) => {
    const a = Object.hasOwn(ASSETS, c.req.param("name")) ? ASSETS[c.req.param("name")] : undefined;
    if (!a) return c.text(`no asset ${JSON.stringify(c.req.param("name"))}`, 404);
    const cache = c.req.query("v") === ASSET_VERSION ? "public, max-age=31536000, immutable" : "no-cache";
    return new Response(Bun.file(a.path), { headers: { "Content-Type": a.type, "Cache-Control": cache } });
  });

  const firstStart = () => existsSync(join(deps.config.dataDir, INITIAL_PASSWORD_FILE));
  app.get("/admin/login", (c) => {
    if (hasAdminSession(c, deps)) return c.redirect(safeNext(c.req.query("next")), 303);
    return c.html(<LoginPage next={safeNext(c.req.query("next"))} firstStart={firstStart()} />);
  });

  app.post("/admin/login", async (c) => {
    const form = await formFields(c);
    const next = safeNext(form.next);
    // The peer, or for a trusted proxy the client it names: forwarding headers from anyone else pick nothing.
    const client = clientIdentity(c, deps) || "unknown";
    const attempt = deps.signInLimiter.begin(client);
    if (!attempt.ok) {
      c.header("Retry-After", String(attempt.retryAfter));
      const why = attempt.busy ? "other sign-ins are being checked right now: try again in a second" : `too many failed sign-ins: try again in ${attempt.retryAfter} s`;
      return c.html(<LoginPage next={next} errors={{ password: why }} />, 429);
    }
    let ok = false;
    try {
      ok = await verifyAdminPassword(deps.store, form.password ?? "");
    } finally {
      attempt.done(ok);
    }
    if (!ok) {
      deps.logger.warn("admin sign-in failed", { client });
      return c.html(<LoginPage next={next} errors={{ password: "wrong password (the user is admin; the first password is in DATA_DIR/initial-admin-password)" }} firstStart={firstStart()} />, 401);
    }
    setCookie(c, SESSION_COOKIE, deps.adminSessions.issue(), { path: "/", httpOnly: true, sameSite: "Strict", secure: overTls(c), maxAge: SESSION_SECONDS });
    deps.logger.info("admin signed in", { client });
    return c.redirect(next, 303);
  });

  app.post("/admin/logout", (c) => {
    deps.adminSessions.revoke(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: overTls(c) });
    return c.redirect("/admin/login", 303);
  });
}
