import type { Hono } from "hono";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { streamVisibility } from "../stream-access.ts";

/** Binds GET /api/ingest: UDP listeners' figures, rejects by reason, kernel drops, and recent reject samples. */
export function bindIngestRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/api/ingest", async (c) => {
    // Same rule as listing streams: free where the policy allows, else any valid token.
    await streamVisibility(c, deps);
    return c.json({ udp: deps.udp.snapshot() });
  });
}
