import { raw } from "hono/html";
import type { Child, FC, PropsWithChildren } from "hono/jsx";
import { ASSET_VERSION } from "./assets.ts";

/** Pages of the admin UI, in the order of the menu. */
export const NAV = [
  ["dashboard", "/admin", "Dashboard"],
  ["destinations", "/admin/destinations", "Destinations"],
  ["tokens", "/admin/tokens", "Tokens"],
  ["relay", "/admin/bookings", "Relay"],
  ["query", "/admin/query", "Query"],
  ["slack", "/admin/slack", "Slack"],
  ["settings", "/admin/settings", "Settings"],
] as const;

export type NavKey = (typeof NAV)[number][0] | "stream" | "login";

// htmx swaps 4xx answers too: forms answer 422 with the errors next to their fields.
const HTMX_CONFIG = JSON.stringify({
  responseHandling: [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "4..", swap: true, error: false },
    { code: "...", swap: false, error: true },
  ],
  historyCacheSize: 0,
});

const asset = (name: string) => `/admin/assets/${name}?v=${ASSET_VERSION}`;

/** The page frame: menu, sign-out, scripts (all served by Switchyard itself). */
export const Layout: FC<PropsWithChildren<{ title: string; active: NavKey; signedIn?: boolean; head?: Child }>> = ({ title, active, signedIn = true, head, children }) => (
  <>
  {raw("<!DOCTYPE html>")}
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <meta name="htmx-config" content={HTMX_CONFIG} />
      <title>{`${title} · Switchyard`}</title>
      <link rel="stylesheet" href={asset("admin.css")} />
      <script src={asset("htmx.min.js")} defer></script>
      <script src={asset("sse.min.js")} defer></script>
      <script src={asset("admin.js")} defer></script>
      {head}
    </head>
    <body hx-ext="sse">
      <header class="top">
        <a class="brand" href="/admin">Switchyard</a>
        {signedIn && (
          <>
            <nav aria-label="main">
              {NAV.map(([key, href, label]) => (
                <a href={href} class={key === active ? "active" : undefined} aria-current={key === active ? "page" : undefined}>{label}</a>
              ))}
            </nav>
            <form method="post" action="/admin/logout">
              <button class="link" type="submit">Sign out</button>
            </form>
          </>
        )}
      </header>
      <main>{children}</main>
    </body>
  </html>
  </>
);

/** A whole page around an answer meant for htmx, for a browser without JavaScript, with the way back. */
export const FallbackPage: FC<{ fragment: string; back: string; status: number }> = ({ fragment, back, status }) => (
  <Layout title={status >= 400 ? "Not saved" : "Done"} active="stream">
    <p><a href={back}>← back</a></p>
    {raw(fragment)}
  </Layout>
);

/** An error as a page (or, for htmx, as a notice to swap in). */
export const ErrorPage: FC<{ status: number; message: string }> = ({ status, message }) => (
  <Layout title={`Error ${status}`} active="stream">
    <h1>Error {status}</h1>
    <Notice kind="bad" text={message} />
    <p><a href="/admin">Back to the dashboard</a></p>
  </Layout>
);

/** An input's error, shown next to it. */
export const FieldError: FC<{ errors?: Record<string, string>; name: string }> = ({ errors, name }) =>
  errors?.[name] ? <span class="field-error" id={`${name}-error`} role="alert">{errors[name]}</span> : null;

/** A labelled text input with its help and error. */
export const TextField: FC<{ name: string; label: string; value?: string; help?: string; errors?: Record<string, string>; type?: string; placeholder?: string; required?: boolean; autocomplete?: string }> = (p) => (
  <label>
    {p.label}
    <input type={p.type ?? "text"} name={p.name} value={p.value ?? ""} placeholder={p.placeholder} required={p.required} autocomplete={p.autocomplete}
      aria-invalid={p.errors?.[p.name] ? "true" : undefined} aria-describedby={p.errors?.[p.name] ? `${p.name}-error` : undefined} />
    {p.help && <span class="help">{p.help}</span>}
    <FieldError errors={p.errors} name={p.name} />
  </label>
);

/** A notice above a form: what happened. */
export const Notice: FC<{ kind: "ok" | "bad" | "warn"; text: string }> = ({ kind, text }) => (
  <div class={`notice ${kind}`} role={kind === "bad" ? "alert" : "status"}>{text}</div>
);
