import type { FC } from "hono/jsx";
import type { BookedConnection, BookingEntry } from "../app/relay/bookings.ts";
import { Layout, Notice, TextField } from "./layout.tsx";

/** What the page shows of the imported practable relay secret: never the secret. */
export interface RelaySecretState {
  set: boolean;
  source: "env" | "store" | null;
  fingerprint: string | null;
}

/** The imported practable relay secret: its state and a form to replace or remove it. */
export const RelaySecretCard: FC<{ state: RelaySecretState; notice?: { kind: "ok" | "bad"; text: string }; errors?: Record<string, string> }> = ({ state, notice, errors }) => (
  <section class="card" id="relay-secret">
    <h2>practable relay secret</h2>
    {notice && <Notice kind={notice.kind} text={notice.text} />}
    <p class="small muted">
      Tokens signed with a practable relay's secret (a lab's device tokens) work here once it is imported; the Tokens page and{" "}
      <code>switchyard token --relay-secret</code> sign new ones with it. It is never shown again.
    </p>
    <p id="relay-secret-state">
      {state.set ? <>Set ({state.source === "env" ? "from SWITCHYARD_RELAY_SECRET" : "stored"}), fingerprint <code>{state.fingerprint}</code></> : "Not set."}
    </p>
    <form class="stack" method="post" action="/admin/bookings/secret" hx-post="/admin/bookings/secret" hx-target="#relay-secret" hx-swap="outerHTML">
      <TextField name="secret" label="Secret" type="password" autocomplete="off" errors={errors} help="the relay's RELAY_TOKEN_SECRET / ACCESSTOKEN_SECRET" />
      <div class="row">
        <button type="submit" name="action" value="set">Import secret</button>
        {state.source === "store" && <button type="submit" name="action" value="clear" class="secondary">Remove</button>}
      </div>
    </form>
  </section>
);

/** Denied and allowed booking ids, the connections with theirs, and the deny/allow form. */
export const BookingsCard: FC<{ denied: BookingEntry[]; allowed: BookingEntry[]; connections: BookedConnection[]; notice?: { kind: "ok" | "bad"; text: string }; errors?: Record<string, string> }> = (p) => (
  <section class="card" id="bookings">
    <h2>Bookings</h2>
    {p.notice && <Notice kind={p.notice.kind} text={p.notice.text} />}
    <form class="stack" method="post" action="/admin/bookings" hx-post="/admin/bookings" hx-target="#bookings" hx-swap="outerHTML">
      <div class="grid" style="grid-template-columns:repeat(auto-fit,minmax(160px,1fr))">
        <TextField name="booking_id" label="Booking id" errors={p.errors} required />
        <TextField name="hours" label="For (hours)" value="24" errors={p.errors} />
      </div>
      <div class="row">
        <button type="submit" name="action" value="deny">Deny (close its sessions)</button>
        <button type="submit" name="action" value="allow" class="secondary">Allow</button>
      </div>
    </form>
    <h3>Denied</h3>
    {p.denied.length === 0 ? <p class="muted">none</p> : (
      <ul id="denied">{p.denied.map((d) => <li><code>{d.booking_id}</code> until {new Date(d.exp * 1000).toISOString()}</li>)}</ul>
    )}
    <h3>Seen in access requests</h3>
    {p.allowed.length === 0 ? <p class="muted">none</p> : (
      <ul id="allowed">{p.allowed.map((d) => <li><code>{d.booking_id}</code> until {new Date(d.exp * 1000).toISOString()}</li>)}</ul>
    )}
    <h3>Connections</h3>
    <div class="scroll">
      <table id="connections">
        <thead><tr><th>Stream</th><th>Origin</th><th>Booking</th><th>Scopes</th><th class="hide-sm">Token expires</th></tr></thead>
        <tbody>
          {p.connections.map((c) => (
            <tr><td>{c.stream}</td><td class="small mono">{c.origin}</td><td>{c.booking_id ?? "-"}</td><td>{[c.read && "read", c.write && "write"].filter(Boolean).join(", ")}</td><td class="small hide-sm">{c.expires ?? "-"}</td></tr>
          ))}
        </tbody>
      </table>
    </div>
  </section>
);

export const BookingsPage: FC<{ secret: RelaySecretState; denied: BookingEntry[]; allowed: BookingEntry[]; connections: BookedConnection[] }> = (p) => (
  <Layout title="Relay" active="relay">
    <h1>Relay: practable secret and bookings</h1>
    <RelaySecretCard state={p.secret} />
    <BookingsCard denied={p.denied} allowed={p.allowed} connections={p.connections} />
  </Layout>
);
