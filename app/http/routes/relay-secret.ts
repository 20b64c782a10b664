import type { Hono } from "hono";
import { badRequest } from "../../core/errors.ts";
import { RELAY_SECRET_NAME, relaySecretProblem, relaySecretView, secretFingerprint } from "../../relay/relay-secret.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/**
 * Binds the imported practable relay secret: GET /api/relay-secret (whether it
 * is set, from where, and a fingerprint), PUT with {"secret"} to store it,
 * DELETE to remove the stored one. It is never answered back.
 */
export function bindRelaySecretRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requireAdmin(deps);
  app.get("/api/relay-secret", admin, (c) => c.json(relaySecretView(deps.config.relaySecret, deps.store)));
  app.put("/api/relay-secret", admin, async (c) => {
    const body = await readJsonObject(c.req.raw, '{"secret": "<the relay\'s secret>"}');
    if (typeof body.secret !== "string") throw badRequest("secret: allowed: the practable relay's secret as a string");
    const problem = relaySecretProblem(body.secret);
    if (problem) throw badRequest(`secret: ${problem}`);
    deps.store.setSecret(RELAY_SECRET_NAME, body.secret);
    deps.logger.info("practable relay secret imported", { fingerprint: secretFingerprint(body.secret) });
    return c.json(relaySecretView(deps.config.relaySecret, deps.store));
  });
  app.delete("/api/relay-secret", admin, (c) => {
    deps.store.setSecret(RELAY_SECRET_NAME, null);
    return c.json(relaySecretView(deps.config.relaySecret, deps.store));
  });
}
