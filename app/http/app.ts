import { Hono } from "hono";
import type { HttpDeps, HttpEnv } from "./deps.ts";
import { handleError, handleNotFound } from "./errors.tsx";
import { bindAlertRoutes } from "./routes/alerts.ts";
import { bindBookingRoutes } from "./routes/bookings.ts";
import { bindRelaySecretRoutes } from "./routes/relay-secret.ts";
import { bindDestinationRoutes } from "./routes/destinations.ts";
import { bindEventRoutes } from "./routes/events.ts";
import { bindFeedRoutes } from "./routes/feeds.ts";
import { bindGrafanaRoutes } from "./routes/grafana.ts";
import { bindQueryRoutes } from "./routes/query.ts";
import { bindSessionRoutes } from "./routes/session.ts";
import { bindSettingsRoutes } from "./routes/settings.ts";
import { bindTsRoutes } from "./routes/ts.ts";
import { bindHealthRoutes } from "./routes/health.ts";
import { bindIngestRoutes } from "./routes/ingest.ts";
import { bindMetricsRoutes } from "./routes/metrics.ts";
import { bindStreamRoutes } from "./routes/streams.ts";
import { apiCsrf } from "./csrf.ts";
import { bindAdminUi } from "./ui/index.ts";

/** Assembles the HTTP app: every route group, one error handler, one 404. */
export function createHttpApp(deps: HttpDeps): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  // Browsers may only call the API from this server's own pages; other clients are judged by their credentials.
  app.use("/api/*", apiCsrf(deps));
  app.use("/ts/*", apiCsrf(deps));
  bindHealthRoutes(app, deps);
  bindMetricsRoutes(app, deps);
  bindFeedRoutes(app, deps);
  bindStreamRoutes(app, deps);
  bindDestinationRoutes(app, deps);
  bindSessionRoutes(app, deps);
  bindBookingRoutes(app, deps);
  bindRelaySecretRoutes(app, deps);
  bindTsRoutes(app, deps);
  bindAlertRoutes(app, deps);
  bindSettingsRoutes(app, deps);
  bindQueryRoutes(app, deps);
  bindGrafanaRoutes(app, deps);
  bindEventRoutes(app, deps);
  bindIngestRoutes(app, deps);
  bindAdminUi(app, deps);
  app.onError(handleError(deps.logger));
  app.notFound(handleNotFound);
  return app;
}
