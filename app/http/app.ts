import { Hono } from "hono";
import type { HttpDeps, HttpEnv } from "./deps.ts";
import { handleError, handleNotFound } from "./errors.ts";
import { bindAlertRoutes } from "./routes/alerts.ts";
import { bindBookingRoutes } from "./routes/bookings.ts";
import { bindRelaySecretRoutes } from "./routes/relay-secret.ts";
import { bindDestinationRoutes } from "./routes/destinations.ts";
import { bindEventRoutes } from "./routes/events.ts";
import { bindFeedRoutes } from "./routes/feeds.ts";
import { bindGrafanaRoutes } from "./routes/grafana.ts";
import { bindQueryRoutes } from "./routes/query.ts";
import { bindSessionRoutes } from "./routes/session.ts";
import { bindOffloadRoutes } from "./routes/offload.ts";
import { bindSettingsRoutes } from "./routes/settings.ts";
import { bindPublishRoutes } from "../sources/http/publish.ts";
import { bindTsRoutes } from "../sources/http/ts.ts";
import { bindHealthRoutes } from "./routes/health.ts";
import { bindIngestRoutes } from "./routes/ingest.ts";
import { bindMetricsRoutes } from "./routes/metrics.ts";
import { bindStreamRoutes } from "./routes/streams.ts";
import { apiCsrf } from "./csrf.ts";
import { createAdminUi } from "./ui/index.ts";

/** Assembles the HTTP app: every API route group with the API's error handler and 404, and the admin UI (its own app, with its own). */
export function createHttpApp(deps: HttpDeps): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  // Browsers may only call the API from this server's own pages; other clients are judged by their credentials.
  app.use("/api/*", apiCsrf(deps));
  app.use("/ts/*", apiCsrf(deps));
  bindHealthRoutes(app, deps);
  bindMetricsRoutes(app, deps);
  bindFeedRoutes(app, deps);
  bindStreamRoutes(app, deps);
  bindPublishRoutes(app, deps);
  bindDestinationRoutes(app, deps);
  bindSessionRoutes(app, deps);
  bindBookingRoutes(app, deps);
  bindRelaySecretRoutes(app, deps);
  bindTsRoutes(app, deps);
  bindAlertRoutes(app, deps);
  bindSettingsRoutes(app, deps);
  bindOffloadRoutes(app, deps);
  bindQueryRoutes(app, deps);
  bindGrafanaRoutes(app, deps);
  bindEventRoutes(app, deps);
  bindIngestRoutes(app, deps);
  app.route("/", createAdminUi(deps));
  app.onError(handleError(deps.logger));
  app.notFound(handleNotFound);
  return app;
}
