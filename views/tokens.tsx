import type { FC } from "hono/jsx";
import type { DeviceToken } from "../app/auth/token-batch.ts";
import { FieldError, Layout, Notice, TextField } from "./layout.tsx";

export interface TokenFormValues {
  prefix: string;
  from: string;
  to: string;
  kind: string;
  access_url: string;
  scopes: string[];
  ttl: string;
  /** "box": this box's secret; "relay": the imported practable relay secret. */
  sign_with?: string;
  booking_id?: string;
}

/** The generator's form: practable's configure script as fields. */
export const TokenForm: FC<{ values: TokenFormValues; errors?: Record<string, string> }> = ({ values, errors }) => (
  <form class="stack" method="post" action="/admin/tokens" hx-post="/admin/tokens" hx-target="#token-result" hx-swap="innerHTML" id="token-form">
    <div class="grid" style="grid-template-columns:repeat(auto-fit,minmax(120px,1fr))">
      <TextField name="prefix" label="Name prefix" value={values.prefix} errors={errors} placeholder="spin" required />
      <TextField name="from" label="From" value={values.from} errors={errors} placeholder="30" required />
      <TextField name="to" label="To" value={values.to} errors={errors} placeholder="41" required />
      <TextField name="kind" label="Kind" value={values.kind} errors={errors} placeholder="log" required />
    </div>
    <TextField name="access_url" label="Relay access URL" value={values.access_url} errors={errors} required
      help="tokens name it as their audience; each device's access file holds ACCESS_URL/session/<prefix>N-<kind>" />
    <fieldset>
      <legend>Scopes</legend>
      {(["read", "write"] as const).map((s) => (
        <label class="checkbox"><input type="checkbox" name="scopes" value={s} checked={values.scopes.includes(s)} /> {s}</label>
      ))}
      <FieldError errors={errors} name="scopes" />
    </fieldset>
    <TextField name="ttl" label="Lifetime" value={values.ttl} errors={errors} help="e.g. 365d (practable's one year), 30d, 12h" />
    <label>
      Sign with
      <select name="sign_with">
        <option value="box" selected={values.sign_with !== "relay"}>this box's secret</option>
        <option value="relay" selected={values.sign_with === "relay"}>the imported practable relay secret (tokens then also work on that relay)</option>
      </select>
      <FieldError errors={errors} name="sign_with" />
    </label>
    <TextField name="booking_id" label="Booking id" value={values.booking_id ?? ""} errors={errors} placeholder="relay-token-cli" help="practable's booking_id claim (empty: relay-token-cli, as practable's relay token)" />
    <div><button type="submit">Generate tokens</button></div>
  </form>
);

/** The generated tokens: shown once, with downloads made in the page (never stored on the server). */
export const TokenResult: FC<{ kind: string; tokens: DeviceToken[]; tarGzBase64: string; json: string; rulesJson: string; name: string }> = ({ kind, tokens, tarGzBase64, json, rulesJson, name }) => (
  <section class="card">
    <Notice kind="warn" text={`${tokens.length} token(s) made. They are shown only now: download them before leaving this page.`} />
    <div class="row" style="margin-bottom:.75rem">
      <a class="button" download={`${name}.tar.gz`} href={`data:application/gzip;base64,${tarGzBase64}`} id="download-tar">Download {name}.tar.gz</a>
      <a class="button secondary" download={`${name}.json`} href={`data:application/json;base64,${Buffer.from(json).toString("base64")}`} id="download-json">Download JSON</a>
      <form method="post" action="/admin/tokens/destinations" hx-post="/admin/tokens/destinations" hx-target="#token-destinations" class="inline">
        <input type="hidden" name="rules" value={rulesJson} />
        <button type="submit" class="secondary">Add as destinations on this box</button>
      </form>
    </div>
    <div id="token-destinations"></div>
    <p class="small muted">The archive holds <code>{kind}.access.&lt;device&gt;</code> and <code>{kind}.token.&lt;device&gt;</code> for each device: the files the boot scripts read.</p>
    <div class="scroll">
      <table>
        <thead><tr><th>Device</th><th>Access URL</th><th>Token</th><th class="hide-sm">Expires</th></tr></thead>
        <tbody>
          {tokens.map((t) => (
            <tr data-device={t.device}><td>{t.device}</td><td class="small mono">{t.access}</td><td class="secret">{t.token}</td><td class="small hide-sm">{t.expires.slice(0, 10)}</td></tr>
          ))}
        </tbody>
      </table>
    </div>
  </section>
);

export const TokensPage: FC<{ values: TokenFormValues }> = ({ values }) => (
  <Layout title="Tokens" active="tokens">
    <h1>Tokens</h1>
    <section class="card">
      <h2>Generate stream tokens for a range of devices</h2>
      <p class="small muted">
        As practable's <code>configure</code> script: for prefix <code>spin</code>, 30 to 41, kind <code>log</code>, each device <code>spinN</code> gets a relay session <code>spinN-log</code>{" "}
        and a token for it signed by this box. The command line does the same:{" "}
        <code>switchyard token --prefix spin --from 30 --to 41 --kind log --access-url URL --out DIR</code>.
      </p>
      <TokenForm values={values} />
    </section>
    <div id="token-result"></div>
  </Layout>
);
