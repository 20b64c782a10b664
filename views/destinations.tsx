import type { FC } from "hono/jsx";
import type { destinationView } from "../app/relay/destinations.ts";
import { ago, count } from "./format.ts";
import { FieldError, Layout, Notice, TextField } from "./layout.tsx";

export type DestinationView = ReturnType<typeof destinationView>;

const STATE_BADGE: Record<string, string> = { connected: "ok", connecting: "warn", "backing-off": "bad", error: "bad", stopped: "" };

export const DestinationState: FC<{ d: DestinationView }> = ({ d }) => (
  <span class={`badge ${STATE_BADGE[d.status.state] ?? "warn"}`} title={d.status.last_error ?? undefined}>{d.status.state}</span>
);

/** The list with live state and each rule's actions. */
export const DestinationsTable: FC<{ destinations: DestinationView[] }> = ({ destinations }) =>
  destinations.length === 0 ? (
    <div class="empty">No destinations yet. Add one below, generate a range on the <a href="/admin/tokens">Tokens</a> page, or POST a rule to <code>/api/destinations</code> as practable's boot scripts do.</div>
  ) : (
    <div class="scroll">
      <table>
        <thead><tr><th>Id</th><th>Stream</th><th>Destination</th><th>State</th><th class="num">Sent</th><th class="num hide-sm">Dropped</th><th class="num">Backlog</th><th>Last error</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          {destinations.map((d) => (
            <tr id={`d-${d.id}`} data-destination={d.id}>
              <td>{d.id}</td>
              <td>{d.stream}</td>
              <td class="small mono">{d.kind === "webhook" ? "webhook " : ""}{d.destination}{d.token ? " (token)" : ""}</td>
              <td><DestinationState d={d} /><div class="small muted">{ago(d.status.since)}</div></td>
              <td class="num">{count(d.status.messages_out)}</td>
              <td class="num hide-sm">{count(d.status.dropped)}</td>
              <td class="num"><Backlog d={d} /></td>
              <td class="small">{d.status.last_error ? <>{d.status.last_error} <span class="muted">({ago(d.status.last_error_at)})</span></> : <span class="muted">none</span>}</td>
              <td>
                <div class="row">
                  <button class="secondary" hx-get={`/admin/destinations/edit?id=${encodeURIComponent(d.id)}`} hx-target="#destination-form" hx-swap="outerHTML show:top">Edit</button>
                  <form method="post" action="/admin/destinations/reconnect" hx-post="/admin/destinations/reconnect" hx-target="#destination-notice" class="inline">
                    <input type="hidden" name="id" value={d.id} />
                    <button class="secondary" type="submit">Reconnect</button>
                  </form>
                  <form method="post" action="/admin/destinations/delete" hx-post="/admin/destinations/delete" hx-target="#destination-notice" hx-confirm={`Delete destination ${d.id}?`} class="inline">
                    <input type="hidden" name="id" value={d.id} />
                    <button class="danger" type="submit">Delete</button>
                  </form>
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );

type ResumeView = { mode: string | null; catching_up: boolean; backlog_messages: number; backlog_oldest: string | null };

/** A store-and-forward destination's backlog (messages waiting in the log, the oldest's age); a dash for others. */
const Backlog: FC<{ d: DestinationView }> = ({ d }) => {
  const r = (d.status as { resume?: ResumeView }).resume;
  if (!r) return <span class="muted" title="not store and forward: messages go out only while connected">–</span>;
  const age = r.backlog_oldest === null ? "" : `oldest from ${ago(r.backlog_oldest)}`;
  return (
    <span data-backlog={r.backlog_messages} title={r.mode ? `store and forward (${r.mode})` : "store and forward"}>
      {count(r.backlog_messages)}
      {r.backlog_messages > 0 && <div class="small muted">{r.catching_up ? "catching up, " : "waiting, "}{age}</div>}
    </span>
  );
};

export interface DestinationFormValues {
  id: string;
  stream: string;
  destination: string;
  token: string;
  file: string;
  kind: string;
  batch: string;
  /** "1" when store and forward is on (a checkbox). */
  resume: string;
}

export const EMPTY_DESTINATION: DestinationFormValues = { id: "", stream: "", destination: "", token: "", file: "", kind: "websocket", batch: "1", resume: "" };

/** Add or edit a rule: the same fields and checks as POST /api/destinations. */
export const DestinationForm: FC<{ values: DestinationFormValues; errors?: Record<string, string>; editing?: boolean; notice?: string }> = ({ values, errors, editing, notice }) => (
  <section class="card" id="destination-form">
    <h2>{editing ? `Edit destination ${values.id}` : "Add a destination"}</h2>
    {notice && <Notice kind="bad" text={notice} />}
    <form class="stack" method="post" action="/admin/destinations" hx-post="/admin/destinations" hx-target="#destination-form" hx-swap="outerHTML">
      {editing ? (
        <label>
          Id
          <input type="text" name="id" value={values.id} readonly />
          <span class="help">to rename a destination, add it under the new id and delete this one</span>
        </label>
      ) : (
        <TextField name="id" label="Id" value={values.id} errors={errors} required help="letters, digits, - and /; posting an existing id replaces that rule" />
      )}
      <TextField name="stream" label="Stream" value={values.stream} errors={errors} required help="the local stream to relay, e.g. spin30" />
      <label>
        Kind
        <select name="kind" aria-invalid={errors?.kind ? "true" : undefined}>
          <option value="websocket" selected={values.kind !== "webhook"}>websocket (a relay session, practable)</option>
          <option value="webhook" selected={values.kind === "webhook"}>webhook (HTTP POSTs)</option>
        </select>
        <FieldError errors={errors} name="kind" />
      </label>
      <TextField name="destination" label="Destination URL" value={values.destination} errors={errors} required
        help="with a token: the relay's access URL (https://relay.example.org/session/spin30-log); without: a ws:// or wss:// URL; webhook: an http(s):// URL" />
      <TextField name="token" label="Token" type="password" value={editing ? "" : values.token} errors={errors} autocomplete="off"
        help={editing ? "leave empty to keep the current token; type - to remove it" : "the access token for the relay (empty: dial the URL directly)"} />
      <TextField name="file" label="Record file" value={values.file} errors={errors} help="optional: append every message sent to this file (inside the data dir's records folder)" />
      <TextField name="batch" label="Webhook batch" type="number" value={values.batch} errors={errors} help="webhook: most messages per POST (1: the body is the message itself)" />
      <label>
        <input type="checkbox" name="resume" value="1" checked={values.resume === "1"} aria-invalid={errors?.resume ? "true" : undefined} />
        Store and forward
        <span class="help">websocket: keep a cursor; while the link is down messages wait in the log, and are sent in order when it is back</span>
        <FieldError errors={errors} name="resume" />
      </label>
      {editing && <input type="hidden" name="editing" value="1" />}
      <div class="row">
        <button type="submit">{editing ? "Save" : "Add destination"}</button>
        {editing && <a class="button secondary" href="/admin/destinations" hx-get="/admin/destinations/edit" hx-target="#destination-form" hx-swap="outerHTML">Cancel</a>}
      </div>
    </form>
  </section>
);

export const DestinationsPage: FC<{ destinations: DestinationView[] }> = ({ destinations }) => (
  <Layout title="Destinations" active="destinations">
    <h1>Destinations</h1>
    <div id="destination-notice"></div>
    <section class="card" sse-connect="/admin/events/destinations">
      <h2>Relayed streams</h2>
      <div id="destination-list" sse-swap="destinations"><DestinationsTable destinations={destinations} /></div>
    </section>
    <DestinationForm values={EMPTY_DESTINATION} />
  </Layout>
);
