import type { Hono } from "hono";
import { destinationRuleFor, generateTokenBatch, parseTokenBatch, tokenFiles } from "../../auth/token-batch.ts";
import { badInput } from "../errors.ts";
import { tarGz } from "../../core/tar.ts";
import { parseRule } from "../../relay/rule.ts";
import { relaySecret } from "../../relay/relay-secret.ts";
import { Notice } from "../../../views/layout.tsx";
import { TokenForm, TokenResult, TokensPage, type TokenFormValues } from "../../../views/tokens.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { formAll, formFields } from "./support.ts";

/** Binds /admin/tokens: the range generator (shown once, downloads built in the page) and adding the range as destinations. */
export function bindTokenPages(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const defaults = (): TokenFormValues => ({
    prefix: "", from: "", to: "", kind: "log", access_url: deps.store.settings.public_url, scopes: ["read", "write"], ttl: "365d",
  });
  app.get("/admin/tokens", (c) => c.html(<TokensPage values={defaults()} />));

  app.post("/admin/tokens", async (c) => {
    const form = await formFields(c);
    const scopes = await formAll(c, "scopes");
    const values: TokenFormValues = { ...defaults(), ...form, scopes };
    const parsed = parseTokenBatch({ ...values, scopes });
    if ("errors" in parsed) return c.html(<section class="card"><TokenForm values={values} errors={parsed.errors} /></section>, 422);
    const req = parsed.request;
    let secret = deps.secret;
    if (values.sign_with === "relay") {
      const imported = relaySecret(deps.config.relaySecret, deps.store).secret;
      if (!imported) return c.html(<section class="card"><TokenForm values={values} errors={{ sign_with: "no practable relay secret is imported: import it on the Relay page first" }} /></section>, 422);
      secret = imported;
    }
    const tokens = await generateTokenBatch(secret, req);
    const name = `${req.kind}-tokens-${req.prefix}${req.from}-${req.prefix}${req.to}`;
    const archive = tarGz(tokenFiles(req.kind, tokens));
    const json = JSON.stringify({ kind: req.kind, access_url: req.accessUrl, scopes: req.scopes, tokens }, null, 2);
    const rules = JSON.stringify(tokens.map((t) => destinationRuleFor(req.kind, t)));
    deps.logger.info("admin generated stream tokens", { prefix: req.prefix, from: req.from, to: req.to, kind: req.kind, count: tokens.length });
    c.header("Cache-Control", "no-store");
    return c.html(<TokenResult kind={req.kind} tokens={tokens} tarGzBase64={Buffer.from(archive).toString("base64")} json={json} rulesJson={rules} name={name} />);
  });

  app.post("/admin/tokens/destinations", async (c) => {
    const { rules = "" } = await formFields(c);
    let list: unknown;
    try {
      list = JSON.parse(rules);
    } catch {
      list = null;
    }
    if (!Array.isArray(list) || list.length === 0) return c.html(<Notice kind="bad" text="no rules came with the form: generate the tokens again" />, 422);
    try {
      const parsed = list.map((r) => parseRule(r, deps.recordsDir));
      for (const r of parsed) await deps.destinations.upsert(r);
      return c.html(<Notice kind="ok" text={`${parsed.length} destination(s) added: ${parsed.map((r) => r.id).join(", ")}. See them on the Destinations page.`} />);
    } catch (err) {
      const bad = badInput(err);
      if (!bad) throw err;
      return c.html(<Notice kind="bad" text={bad.message} />, 422);
    }
  });
}
