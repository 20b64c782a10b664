import type { Hono } from "hono";
import { badRequest } from "../../core/errors.ts";
import { credentialProblem, S3_KEY_ID_SECRET, S3_SECRET_SECRET } from "../../log/s3-store.ts";
import { requireAdmin } from "../admin.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/**
 * Binds GET /api/offload (the log's offload to S3: settings, where the
 * credentials come from, figures) and PUT /api/offload/credentials (stores the
 * access key pair in the settings store's secrets; write-only: no answer or page
 * ever shows either key, only where the credentials in force come from).
 */
export function bindOffloadRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const admin = requireAdmin(deps);
  app.get("/api/offload", admin, (c) => {
    if (!deps.offloader) throw badRequest("this server has no log offload");
    return c.json(deps.offloader.status());
  });
  app.put("/api/offload/credentials", admin, async (c) => {
    const body = await readJsonObject(c.req.raw, '{"access_key_id":"…","secret_access_key":"…"} (or both null to remove them)');
    const { access_key_id: id, secret_access_key: secret } = body;
    const fields: Record<string, string> = {};
    for (const k of Object.keys(body)) if (k !== "access_key_id" && k !== "secret_access_key") fields[k] = "unknown field; allowed: access_key_id, secret_access_key";
    if (id === null && secret === null) {
      if (Object.keys(fields).length === 0) {
        deps.store.setSecret(S3_KEY_ID_SECRET, null);
        deps.store.setSecret(S3_SECRET_SECRET, null);
        deps.offloader?.kick();
        return c.json({ stored: false, credentials: deps.offloader?.status().credentials ?? null });
      }
    } else {
      if (credentialProblem(id)) fields.access_key_id = `the access key id: ${credentialProblem(id)} (both null to remove the stored pair)`;
      if (credentialProblem(secret)) fields.secret_access_key = `the secret access key: ${credentialProblem(secret)} (both null to remove the stored pair)`;
    }
    if (Object.keys(fields).length > 0) throw badRequest(`invalid credentials: ${Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; ")}`, { fields });
    deps.store.setSecret(S3_KEY_ID_SECRET, id as string);
    deps.store.setSecret(S3_SECRET_SECRET, secret as string);
    deps.offloader?.kick();
    const source = deps.offloader?.status().credentials ?? "settings";
    return c.json({ stored: true, credentials: source, ...(source !== "settings" ? { note: `${source} is set in the environment and wins over the stored credentials` } : {}) });
  });
}
