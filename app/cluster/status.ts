import { streamNameProblem } from "../core/stream-name.ts";
import type { Hub } from "../hub/hub.ts";
import { streamStats, type StreamStats } from "../hub/stream-state.ts";
import { NODE_ID, type ClusterLink } from "./link.ts";

/** What a node answers on the status subject. */
export interface NodeStatus {
  node: string;
  version: string;
  ts: string;
  connections: number;
  streams: StreamStats[];
  /** How many streams the node has (more than `streams` lists when it has over STATUS_STREAMS). */
  streams_total: number;
}

/** Most streams a status reply lists (the busiest over the last minute), so it stays well under NATS's 1 MiB max_payload. */
export const STATUS_STREAMS = 1000;

/** This node's state, as it answers a status request: its streams, the busiest STATUS_STREAMS if it has more (`streams_total` says how many). */
export function nodeStatus(hub: Hub, node: string, version: string): NodeStatus {
  let streams = hub.listStreams().map(streamStats);
  const total = streams.length;
  if (total > STATUS_STREAMS) streams = streams.sort((a, b) => b.rate_1m - a.rate_1m || a.stream.localeCompare(b.stream)).slice(0, STATUS_STREAMS).sort((a, b) => a.stream.localeCompare(b.stream));
  return { node, version, ts: new Date().toISOString(), connections: hub.connections, streams, streams_total: total };
}

function isNodeStatus(v: unknown): v is NodeStatus {
  const s = v as NodeStatus;
  return typeof s === "object" && s !== null && typeof s.node === "string" && NODE_ID.test(s.node) && typeof s.version === "string" && Array.isArray(s.streams) && typeof s.connections === "number";
}

/**
 * What is shown of another node's reply: the documented fields only (a reply
 * carries its node's NATS link too, which is not for API clients), and only
 * the stream entries that name a valid stream, so a malformed reply from
 * anyone on NATS cannot break the answer (or the filter by a client's token).
 */
function shownStatus(s: NodeStatus): NodeStatus {
  const streams = s.streams.filter((x): x is StreamStats => typeof x === "object" && x !== null && typeof x.stream === "string" && streamNameProblem(x.stream) === null);
  return {
    node: s.node, version: s.version, ts: typeof s.ts === "string" ? s.ts : "", connections: s.connections, streams,
    streams_total: typeof s.streams_total === "number" ? s.streams_total : streams.length,
  };
}

/** The cluster's state as GET /api/streams?scope=cluster shows it. */
export interface ClusterView {
  node: string;
  connected: boolean;
  nodes: NodeStatus[];
  /** Nodes seen before (messages or earlier replies) that did not answer within the wait. */
  missing: string[];
  wait_ms: number;
}

/**
 * Asks every node for its state and waits at most `waitMs`; this node's own
 * state is always there (also with NATS down). Nodes heard of before that did
 * not answer are listed in `missing`.
 */
export async function clusterView(link: ClusterLink, local: NodeStatus, waitMs: number): Promise<ClusterView> {
  link.seen(local.node); // also ages out nodes not heard of for long
  const known = [...link.nodesSeen.keys()].filter((n) => n !== local.node);
  const replies = (await link.requestStatus(waitMs)).filter(isNodeStatus).filter((s) => s.node !== local.node).map(shownStatus);
  const nodes = new Map<string, NodeStatus>();
  for (const r of replies) {
    nodes.set(r.node, r);
    link.seen(r.node);
  }
  const missing = known.filter((n) => !nodes.has(n)).sort();
  return { node: local.node, connected: link.state().connected, nodes: [local, ...[...nodes.values()].sort((a, b) => a.node.localeCompare(b.node))], missing, wait_ms: waitMs };
}

/** How long an answer of the cluster is used again for GET /api/streams?scope=cluster, ms. */
export const CLUSTER_VIEW_REUSE_MS = 1000;

const recentViews = new WeakMap<ClusterLink, Map<number, { at: number; view: Promise<ClusterView> }>>();

/**
 * clusterView() for the HTTP API: requests that come while one with the same
 * wait is under way, or within CLUSTER_VIEW_REUSE_MS of its answer, share it.
 * Each ask is a request to every node of the cluster, each of which lists its
 * streams to answer; without this, any client could make the whole cluster
 * do that as fast as it can send requests to one node.
 */
export function sharedClusterView(link: ClusterLink, local: () => NodeStatus, waitMs: number): Promise<ClusterView> {
  let views = recentViews.get(link);
  if (!views) recentViews.set(link, (views = new Map()));
  const now = Date.now();
  for (const [w, v] of views) if (v.at !== 0 && now - v.at > CLUSTER_VIEW_REUSE_MS) views.delete(w);
  const hit = views.get(waitMs);
  if (hit) return hit.view;
  const entry = { at: 0, view: clusterView(link, local(), waitMs) };
  views.set(waitMs, entry);
  const settle = () => { entry.at = Date.now(); };
  entry.view.then(settle, () => { settle(); views.delete(waitMs); });
  return entry.view;
}

/** Default and longest wait for the other nodes' answers (GET /api/streams?scope=cluster&wait_ms=…). */
export const CLUSTER_WAIT_MS = { default: 500, max: 5000 } as const;

/** Reads `wait_ms`; a clear error for anything but a whole number from 1 to the maximum. */
export function clusterWaitProblem(text: string | undefined): { ms: number } | { problem: string } {
  if (text === undefined) return { ms: CLUSTER_WAIT_MS.default };
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > CLUSTER_WAIT_MS.max) return { problem: `wait_ms: ${JSON.stringify(text)} is not valid; allowed: a whole number of milliseconds from 1 to ${CLUSTER_WAIT_MS.max}` };
  return { ms: n };
}

/** The cluster view of a node that has not joined a cluster: itself only. */
export function standaloneView(local: NodeStatus): ClusterView & { joined: false } {
  return { node: local.node, connected: false, nodes: [local], missing: [], wait_ms: 0, joined: false };
}

/** How old the dashboard's cluster view may get before it is asked for again, ms. */
const PANEL_REFRESH_MS = 2000;

/**
 * The cluster view the admin dashboard shows: asked for in the background when
 * a dashboard update finds it older than two seconds, so however many
 * dashboards are open, a node asks the cluster at most every two seconds and
 * no page waits on NATS.
 */
export class ClusterPanel {
  private view: ClusterView | null = null;
  private at = 0;
  private asking = false;

  constructor(private readonly link: ClusterLink, private readonly local: () => NodeStatus) {}

  /** The latest view (null until the first answer), and the link's own state. */
  current(): { link: ReturnType<ClusterLink["state"]>; view: ClusterView | null } {
    if (!this.asking && Date.now() - this.at > PANEL_REFRESH_MS) {
      this.asking = true;
      void clusterView(this.link, this.local(), CLUSTER_WAIT_MS.default)
        .then((v) => { this.view = v; })
        .finally(() => { this.at = Date.now(); this.asking = false; });
    }
    return { link: this.link.state(), view: this.view };
  }
}
