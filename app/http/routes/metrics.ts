import type { Hono } from "hono";
import { activeQueries, queryCounts, queuedQueries, ridingQueries } from "../../analytics/run-query.ts";
import type { Hub } from "../../hub/hub.ts";
import { REJECT_REASONS } from "../../sources/udp/datagram.ts";
import type { UdpIngestSnapshot } from "../../sources/udp/ingest.ts";
import { COMMIT, VERSION } from "../../version.ts";
import type { Destination } from "../../relay/destination.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import type { OffloadStatus } from "../../log/offloader.ts";
import { streamVisibility } from "../stream-access.ts";
import { renderClusterMetrics } from "../../cluster/metrics.ts";

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** Reasons a websocket connection is refused, listed at 0 before the first one. */
const REFUSAL_REASONS = ["policy", "max_connections", "other"];

/**
 * Renders the hub's and UDP ingest's figures in Prometheus text format 0.0.4.
 * Counters only go up for the process's lifetime (a stream retired after
 * stream_linger_seconds carries its counters when it comes back); byte counters
 * say so in their names; every labelled reason is present from 0.
 */
export function renderMetrics(hub: Hub, udp: UdpIngestSnapshot, destinations: Destination[] = [], visible: (stream: string) => boolean = () => true, startedAtMs = Date.now()): string {
  const out: string[] = [];
  const metric = (name: string, type: "gauge" | "counter", help: string, samples: [string, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
  };
  const t = hub.totals;
  metric("switchyard_build_info", "gauge", "Build of the running Switchyard (always 1).", [[`{version="${escapeLabel(VERSION)}",commit="${escapeLabel(COMMIT)}",bun="${escapeLabel(Bun.version)}"}`, 1]]);
  metric("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.", [["", Math.floor(startedAtMs / 1000)]]);
  metric("switchyard_connections", "gauge", "Open websocket connections.", [["", hub.connections]]);
  metric("switchyard_event_streams", "gauge", "Open server-sent event streams of streams (they share max_connections with websockets).", [["", hub.eventStreams]]);
  metric("switchyard_connections_opened_total", "counter", "Websocket connections accepted.", [["", t.connectionsOpened]]);
  metric("switchyard_connections_refused_total", "counter", "Websocket connections refused, by reason.",
    [...new Set([...REFUSAL_REASONS, ...Object.keys(t.connectionsRefused)])].map((r) => [`{reason="${escapeLabel(r)}"}`, t.connectionsRefused[r] ?? 0]));
  metric("switchyard_messages_in_total", "counter", "Messages accepted by the hub.", [["", t.messagesIn]]);
  metric("switchyard_received_bytes_total", "counter", "Payload bytes accepted by the hub.", [["", t.bytesIn]]);
  metric("switchyard_messages_out_total", "counter", "Messages handed to subscribers.", [["", t.messagesOut]]);
  metric("switchyard_sent_bytes_total", "counter", "Payload bytes handed to subscribers.", [["", t.bytesOut]]);
  metric("switchyard_slow_disconnects_total", "counter", "Subscribers disconnected for backpressure.", [["", t.slowDisconnects]]);
  metric("switchyard_log_refused_total", "counter", "Messages refused (not stored, not delivered) because the log could not write.", [["", t.refusedUnlogged]]);
  metric("switchyard_log_delivered_unlogged_total", "counter", "Messages delivered although the log could not write them (log_deliver_unlogged).", [["", t.deliveredUnlogged]]);
  metric("switchyard_sink_errors_total", "counter", "Messages a sink (recent ring, destinations) failed on: a bug to report.", [["", t.sinkErrors]]);
  metric("switchyard_queries_total", "counter", "SQL queries run in a query process (API, history, Grafana, admin UI).", [["", queryCounts.run]]);
  metric("switchyard_queries_shared_total", "counter", "Queries answered with the answer of an identical query that was still waiting for a slot when they came, or running over the same data.", [["", queryCounts.shared]]);
  metric("switchyard_queries_cached_total", "counter", "Queries answered from the query process's cache of answers: the same SQL over unchanged data (query_cache_mb).", [["", queryCounts.cached]]);
  metric("switchyard_queries_running", "gauge", "Queries running in query processes now.", [["", activeQueries()]]);
  metric("switchyard_queries_waiting", "gauge", "Queries waiting for a query slot now.", [["", queuedQueries()]]);
  metric("switchyard_queries_riding", "gauge", "Queries waiting, without a slot, for the answer of an identical query running now.", [["", ridingQueries()]]);
  const streams = hub.listStreams().filter((s) => visible(s.name));
  const per = (name: string, type: "gauge" | "counter", help: string, pick: (s: (typeof streams)[number]) => number) =>
    metric(name, type, help, streams.map((s) => [`{stream="${escapeLabel(s.name)}"}`, pick(s)]));
  per("switchyard_stream_subscribers", "gauge", "Subscribers of a stream.", (s) => s.subscribers);
  per("switchyard_stream_publishers", "gauge", "Publishers of a stream (websocket clients that sent, other origins seen in the last minute).", (s) => s.publishers);
  per("switchyard_stream_messages_in_total", "counter", "Messages published on a stream.", (s) => s.messagesIn);
  per("switchyard_stream_received_bytes_total", "counter", "Payload bytes published on a stream.", (s) => s.bytesIn);
  per("switchyard_stream_messages_out_total", "counter", "Messages handed to a stream's subscribers.", (s) => s.messagesOut);
  per("switchyard_stream_sent_bytes_total", "counter", "Payload bytes handed to a stream's subscribers.", (s) => s.bytesOut);
  per("switchyard_stream_dropped_total", "counter", "Messages a stream's slow subscribers lost to backpressure.", (s) => s.dropped);
  per("switchyard_stream_slow_disconnects_total", "counter", "Subscribers of a stream disconnected for backpressure.", (s) => s.slowDisconnects);
  const ports = udp.listeners;
  const perPort = (name: string, type: "gauge" | "counter", help: string, pick: (l: (typeof ports)[number]) => number | null) =>
    metric(name, type, help, ports.flatMap((l) => (pick(l) === null ? [] : [[`{port="${l.port}",format="${l.format}"}`, pick(l)!] as [string, number]])));
  perPort("switchyard_udp_datagrams_total", "counter", "UDP datagrams received.", (l) => l.datagrams);
  perPort("switchyard_udp_received_bytes_total", "counter", "UDP bytes received.", (l) => l.bytes);
  perPort("switchyard_udp_accepted_total", "counter", "Messages published from UDP datagrams.", (l) => l.accepted);
  metric("switchyard_udp_rejected_total", "counter", "UDP records rejected, by reason.",
    ports.flatMap((l) => REJECT_REASONS.map((r) => [`{port="${l.port}",reason="${r}"}`, l.rejected_by_reason[r] ?? 0] as [string, number])));
  perPort("switchyard_udp_errors_total", "counter", "UDP datagrams whose handling failed inside Switchyard (a bug).", (l) => l.errors);
  perPort("switchyard_udp_kernel_drops_total", "counter", "Datagrams the kernel dropped for this socket (receive buffer full), from /proc/net/udp.", (l) => l.kernel_drops);
  const perDest = (name: string, type: "gauge" | "counter", help: string, pick: (d: Destination) => number) =>
    metric(name, type, help, destinations.map((d) => [`{id="${escapeLabel(d.rule.id)}",stream="${escapeLabel(d.rule.stream)}"}`, pick(d)]));
  perDest("switchyard_destination_connected", "gauge", "1 when a destination is connected and not in a run of failed attempts (webhook: its last POST worked).", (d) => (d.status.up ? 1 : 0));
  perDest("switchyard_destination_connects_total", "counter", "Times a destination (re)connected.", (d) => d.status.connects);
  perDest("switchyard_destination_messages_out_total", "counter", "Messages a destination sent.", (d) => d.status.messagesOut);
  perDest("switchyard_destination_sent_bytes_total", "counter", "Payload bytes a destination sent.", (d) => d.status.bytesOut);
  perDest("switchyard_destination_attempts_total", "counter", "Connection attempts a destination made (or POSTs it tried).", (d) => d.status.attempts);
  perDest("switchyard_destination_messages_in_total", "counter", "Messages a destination's remote sent back.", (d) => d.status.messagesIn);
  perDest("switchyard_destination_dropped_total", "counter", "Messages a destination dropped (not connected, or its buffer full).", (d) => d.status.dropped);
  metric("switchyard_destination_backlog_messages", "gauge", "Messages waiting in the log for a store-and-forward destination (\"resume\": true).",
    destinations.flatMap((d) => {
      const r = d.status.resume?.() as { backlog_messages?: number } | undefined;
      return typeof r?.backlog_messages === "number" ? [[`{id="${escapeLabel(d.rule.id)}",stream="${escapeLabel(d.rule.stream)}"}`, r.backlog_messages] as [string, number]] : [];
    }));
  metric("process_resident_memory_bytes", "gauge", "Resident memory of the process.", [["", process.memoryUsage.rss()]]);
  return out.join("\n") + "\n";
}

/** Binds GET /metrics. */
/** The log offload's figures in Prometheus text format. */
export function renderOffloadMetrics(o: OffloadStatus): string {
  const lines: string[] = [];
  const metric = (name: string, type: "gauge" | "counter", help: string, value: number) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
  metric("switchyard_offload_enabled", "gauge", "1 when the log is offloaded to S3-compatible storage (offload_enabled).", o.enabled ? 1 : 0);
  metric("switchyard_offload_pending_files", "gauge", "Local Parquet files not yet verified in the remote store (local retention keeps them).", o.pending_files);
  metric("switchyard_offload_pending_bytes", "gauge", "Bytes of the local Parquet files not yet verified in the remote store.", o.pending_bytes);
  metric("switchyard_offload_verified_files", "gauge", "Parquet files verified in the remote store.", o.verified_files);
  metric("switchyard_offload_verified_bytes", "gauge", "Bytes of the Parquet files verified in the remote store.", o.verified_bytes);
  metric("switchyard_offload_uploaded_files_total", "counter", "Parquet files uploaded and verified.", o.uploaded_files_total);
  metric("switchyard_offload_uploaded_bytes_total", "counter", "Bytes uploaded and verified.", o.uploaded_bytes_total);
  metric("switchyard_offload_failures_total", "counter", "Offload passes that failed (each is retried with backoff).", o.failures_total);
  metric("switchyard_offload_mismatches_total", "counter", "Remote objects found wrong or missing by a check, and uploaded again.", o.mismatches_total);
  metric("switchyard_offload_remote_deleted_total", "counter", "Remote objects deleted because a merge replaced their files.", o.remote_deleted_total);
  metric("switchyard_offload_failing", "gauge", "1 while every offload attempt fails.", o.failing_since ? 1 : 0);
  return lines.join("\n") + "\n";
}

export function bindMetricsRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  app.get("/metrics", async (c) => {
    // Same rule as GET /api/streams: per-stream figures only for the streams the client may see.
    const visible = await streamVisibility(c, deps);
    // A name no stream can have: only a client that sees every stream (free access, or topic "*") sees the destinations too.
    const everything = visible("\u0000all");
    const body = renderMetrics(deps.hub, deps.udp.snapshot(), everything ? deps.destinations.list() : [], visible, deps.startedAt) + (deps.cluster ? renderClusterMetrics(deps.cluster) : "") + (deps.offloader ? renderOffloadMetrics(deps.offloader.status()) : "");
    return c.body(body, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
}
