import { DROP_REASONS, type ClusterLink } from "./link.ts";

/** The cluster link's figures in Prometheus text format (appended to GET /metrics when the node has joined a cluster). */
export function renderClusterMetrics(link: ClusterLink): string {
  const s = link.state();
  const out: string[] = [];
  const metric = (name: string, type: "gauge" | "counter", help: string, samples: [string, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
  };
  metric("switchyard_cluster_connected", "gauge", "1 while connected to a NATS server of the cluster, else 0.", [[`{node="${s.node}"}`, s.connected ? 1 : 0]]);
  metric("switchyard_cluster_subjects", "gauge", "NATS subjects subscribed to (streams with local interest, alert patterns).", [["", s.subjects]]);
  metric("switchyard_cluster_published_total", "counter", "Messages that entered this node, published to NATS.", [["", s.published]]);
  metric("switchyard_cluster_published_bytes_total", "counter", "Payload bytes published to NATS.", [["", s.publishedBytes]]);
  metric("switchyard_cluster_received_total", "counter", "Messages from other nodes published into this node's hub.", [["", s.received]]);
  metric("switchyard_cluster_received_bytes_total", "counter", "Payload bytes from other nodes.", [["", s.receivedBytes]]);
  metric("switchyard_cluster_buffered_total", "counter", "Messages kept while NATS was unreachable, to publish once it is back.", [["", s.buffered]]);
  metric("switchyard_cluster_buffer_dropped_total", "counter", "Messages not published to NATS because the buffer kept while it was unreachable was full.", [["", s.bufferDropped]]);
  metric("switchyard_cluster_pending_bytes", "gauge", "Payload bytes waiting in that buffer now.", [["", s.pending_bytes]]);
  metric("switchyard_cluster_publish_errors_total", "counter", "Messages NATS refused to take (e.g. larger than its max_payload).", [["", s.publishErrors]]);
  metric("switchyard_cluster_reconnects_total", "counter", "Reconnections to NATS after a lost connection.", [["", s.reconnects]]);
  metric("switchyard_cluster_dropped_total", "counter", "Messages from NATS dropped, by reason.", DROP_REASONS.map((r) => [`{reason="${r}"}`, s.dropped[r]]));
  return out.join("\n") + "\n";
}
