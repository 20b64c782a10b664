import { Hono } from "hono";
import { uiCsrf } from "../csrf.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { bindAuthRoutes, requireSession } from "./auth.tsx";
import { bindConfigPages } from "./config-pages.tsx";
import { bindDestinationPages } from "./destinations.tsx";
import { bindLiveRoutes } from "./live.tsx";
import { bindQueryPage } from "./query.tsx";
import { bindTokenPages } from "./tokens.tsx";
import { bindBookingPages } from "./bookings.tsx";
import { adminNotFound, handleAdminError } from "./errors.tsx";
import { withoutJavaScript } from "./fallback.tsx";

/**
 * The admin UI under /admin, as its own Hono app with its own error handler and
 * 404 (HTML pages and htmx fragments, never the API's JSON): every form is
 * CSRF-checked; assets and sign-in are open, every other page and fragment needs
 * the admin session. Mounted at the root by createHttpApp.
 */
export function createAdminUi(deps: HttpDeps): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
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
  // A sub-app's notFound is not used once it is mounted: this catch-all, last, is the UI's 404.
  app.all("/admin/*", adminNotFound);
  app.onError(handleAdminError(deps.logger));
  return app;
}
