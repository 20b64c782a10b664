import type { Hono } from "hono";
import { uiCsrf } from "../csrf.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { bindAuthRoutes, requireSession } from "./auth.tsx";
import { bindConfigPages } from "./config-pages.tsx";
import { bindDestinationPages } from "./destinations.tsx";
import { bindLiveRoutes } from "./live.tsx";
import { bindQueryPage } from "./query.tsx";
import { bindTokenPages } from "./tokens.tsx";
import { bindBookingPages } from "./bookings.tsx";
import { withoutJavaScript } from "./fallback.tsx";

/**
 * Binds the admin UI under /admin: every form is CSRF-checked; assets and
 * sign-in are open, every other page and fragment needs the admin session.
 */
export function bindAdminUi(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/", (c) => c.redirect("/admin", 303));
  app.use("/admin/*", uiCsrf(deps));
  app.use("/admin/*", withoutJavaScript);
  bindAuthRoutes(app, deps);
  const session = requireSession(deps);
  app.use("/admin", session);
  app.use("/admin/*", session);
  bindLiveRoutes(app, deps);
  bindDestinationPages(app, deps);
  bindTokenPages(app, deps);
  bindBookingPages(app, deps);
  bindQueryPage(app, deps);
  bindConfigPages(app, deps);
}
