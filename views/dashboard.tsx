import type { FC } from "hono/jsx";
import type { AlertRecord } from "../app/alerts/engine.ts";
import type { StreamStats } from "../app/hub/stream-state.ts";
import type { UdpIngestSnapshot } from "../app/sources/udp/ingest.ts";
import type { LogUsage } from "../app/log/usage.ts";
import type { DestinationView } from "./destinations.tsx";
import { DestinationState } from "./destinations.tsx";
import { ago, bytes, count, rate, streamHref } from "./format.ts";
import { Layout } from "./layout.tsx";
import { Sparkline } from "./sparkline.tsx";
import { TlsExpiry } from "./tls.tsx";
import type { TlsState } from "../app/tls/server-tls.ts";
import { ClusterCard, type ClusterPanelData } from "./cluster.tsx";

export interface StreamRow extends StreamStats {
  rates: readonly number[];
}

/** Streams with their clients, rate and sparkline. */
export const StreamsTable: FC<{ streams: StreamRow[]; port: string; scheme?: "ws" | "wss" }> = ({ streams, port, scheme = "ws" }) =>
  streams.length === 0 ? (
    <div class="empty">
      No streams yet: send one with <code>switchyard send demo 'hello'</code>, or connect a websocket client to{" "}
      <code>{scheme}://this-host:{port}/ws/demo</code>, or POST to <code>/api/streams/demo/messages</code>.
    </div>
  ) : (
    <div class="scroll">
      <table>
        <thead>
          <tr><th>Stream</th><th class="num">Subscribers</th><th class="num">Publishers</th><th class="num">Messages/s</th><th>Last 3 minutes</th><th class="num hide-sm">Messages</th><th class="num hide-sm">Dropped</th><th class="hide-sm">Last message</th></tr>
        </thead>
        <tbody>
          {streams.map((s) => (
            <tr data-stream={s.stream}>
              <td><a href={streamHref(s.stream)}>{s.stream}</a></td>
              <td class="num">{s.subscribers}</td>
              <td class="num">{s.publishers}</td>
              <td class="num" data-rate>{rate(s.rate_1s)}</td>
              <td><Sparkline values={s.rates} /></td>
              <td class="num hide-sm">{count(s.messages_in)}</td>
              <td class="num hide-sm">{count(s.dropped)}</td>
              <td class="hide-sm">{ago(s.last_message_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );

/** UDP ingest: per port figures and rejects. */
export const UdpCard: FC<{ udp: UdpIngestSnapshot }> = ({ udp }) =>
  udp.listeners.length === 0 ? (
    <div class="empty">No UDP port is open: start with <code>--udp-port 8889</code> or add <code>udp_listeners</code> in Settings.</div>
  ) : (
    <div class="scroll">
      <table>
        <thead><tr><th>Port</th><th>Format</th><th class="num">Datagrams/s</th><th class="num">Accepted</th><th class="num">Rejected</th><th class="num hide-sm">Kernel drops</th></tr></thead>
        <tbody>
          {udp.listeners.map((l) => (
            <tr>
              <td>{l.port}</td>
              <td>{l.format}{l.stream ? ` → ${l.stream}` : ""}</td>
              <td class="num">{rate(l.datagrams_per_second)}</td>
              <td class="num">{count(l.accepted)}</td>
              <td class="num" title={Object.entries(l.rejected_by_reason).map(([r, n]) => `${r}: ${n}`).join(", ")}>
                {count(l.rejected)}
                {l.rejected > 0 && <div class="small muted">{Object.entries(l.rejected_by_reason).map(([r, n]) => `${r} ${n}`).join(", ")}</div>}
              </td>
              <td class="num hide-sm">{l.kernel_drops ?? "n/a"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {udp.recent_rejects.length > 0 && (
        <p class="small muted">Last reject: {udp.recent_rejects.at(-1)!.reason} from {udp.recent_rejects.at(-1)!.from} ({udp.recent_rejects.at(-1)!.detail})</p>
      )}
    </div>
  );

/** Destinations in short: state per rule. */
export const DestinationsSummary: FC<{ destinations: DestinationView[] }> = ({ destinations }) =>
  destinations.length === 0 ? (
    <div class="empty">No destinations: <a href="/admin/destinations">add one</a> to relay a stream to another relay or a webhook.</div>
  ) : (
    <table>
      <tbody>
        {destinations.map((d) => (
          <tr><td><a href={`/admin/destinations#d-${d.id}`}>{d.id}</a></td><td>{d.stream}</td><td><DestinationState d={d} /></td></tr>
        ))}
      </tbody>
    </table>
  );

/** Disk use of the durable log. */
export const DiskCard: FC<{ usage: LogUsage }> = ({ usage }) => {
  const pct = usage.total_bytes ? Math.round((usage.free_bytes / usage.total_bytes) * 100) : null;
  return (
    <div>
      <div class="figure">{bytes(usage.parquet_bytes + usage.spool_bytes)}</div>
      <div class="small muted">Parquet {bytes(usage.parquet_bytes)} · spool {bytes(usage.spool_bytes)}</div>
      <div class="small">{pct === null ? "free space unknown" : `${bytes(usage.free_bytes)} free (${pct}%)`}</div>
      {usage.offload && (
        <div class="small" id="offload-usage">
          Offloaded to S3: {bytes(usage.offload.verified_bytes)} in {usage.offload.verified_files} files · waiting {bytes(usage.offload.pending_bytes)} in {usage.offload.pending_files} files
          {usage.offload.failing_since && <div class="bad">offload failing since {usage.offload.failing_since}: {usage.offload.last_error}; retention keeps the files not yet offloaded</div>}
        </div>
      )}
    </div>
  );
};

/** The latest alerts. */
export const AlertsCard: FC<{ alerts: AlertRecord[]; firing: number }> = ({ alerts, firing }) =>
  alerts.length === 0 ? (
    <div class="empty">No alerts yet. <a href="/admin/slack">Set up Slack</a> to be told when destinations drop or streams go silent.</div>
  ) : (
    <div>
      {firing > 0 && <p><span class="badge bad">{firing} firing</span></p>}
      <table>
        <tbody>
          {alerts.slice(0, 8).map((a) => (
            <tr>
              <td class="small muted" style="white-space:nowrap">{ago(a.ts)}</td>
              <td><span class={`badge ${a.state === "firing" ? "bad" : a.state === "resolved" ? "ok" : ""}`}>{a.state}</span></td>
              <td>{a.text}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );

export interface DashboardData {
  streams: StreamRow[];
  udp: UdpIngestSnapshot;
  destinations: DestinationView[];
  usage: LogUsage;
  alerts: AlertRecord[];
  firing: number;
  port: string;
  tls?: TlsState | null;
  /** The NATS cluster (absent: this node has not joined one). */
  cluster?: ClusterPanelData | null;
}

/** Every live part of the dashboard, by the SSE event name that refreshes it. */
export function dashboardParts(d: DashboardData) {
  return {
    streams: <StreamsTable streams={d.streams} port={d.port} scheme={d.tls ? "wss" : "ws"} />,
    udp: <UdpCard udp={d.udp} />,
    destinations: <DestinationsSummary destinations={d.destinations} />,
    disk: <DiskCard usage={d.usage} />,
    alerts: <AlertsCard alerts={d.alerts} firing={d.firing} />,
    ...(d.cluster ? { cluster: <ClusterCard cluster={d.cluster} /> } : {}),
  };
}

/** The dashboard: live over server-sent events (/admin/events/dashboard). */
export const DashboardPage: FC<{ data: DashboardData }> = ({ data }) => {
  const parts = dashboardParts(data);
  return (
    <Layout title="Dashboard" active="dashboard">
      <div sse-connect="/admin/events/dashboard">
        <h1>Dashboard</h1>
        <section class="card">
          <h2>Streams</h2>
          <div id="streams" sse-swap="streams">{parts.streams}</div>
        </section>
        <div class="grid">
          <section class="card"><h2>UDP ingest</h2><div id="udp" sse-swap="udp">{parts.udp}</div></section>
          <section class="card"><h2>Destinations</h2><div id="destinations" sse-swap="destinations">{parts.destinations}</div></section>
          <section class="card"><h2>Log on disk</h2><div id="disk" sse-swap="disk">{parts.disk}</div></section>
          {data.tls && <section class="card"><h2>TLS certificate</h2><TlsExpiry tls={data.tls} /></section>}
        </div>
        {parts.cluster && <section class="card"><h2>Cluster</h2><div id="cluster" sse-swap="cluster">{parts.cluster}</div></section>}
        <section class="card"><h2>Recent alerts</h2><div id="alerts" sse-swap="alerts">{parts.alerts}</div></section>
      </div>
    </Layout>
  );
};
