import type { AlertEngine } from "../alerts/engine.ts";
import type { Settings } from "../config/settings.ts";
import type { Logger } from "../core/logger.ts";
import type { Hub } from "../hub/hub.ts";
import type { Destinations } from "../relay/destinations.ts";
import type { Followers } from "../sinks/replay.ts";
import type { StreamTaps } from "../sinks/taps.ts";
import { VERSION } from "../version.ts";
import { interestSubjects } from "./interest.ts";
import { ClusterLink, shownServer } from "./link.ts";
import { nodeStatus } from "./status.ts";

/** What joining a cluster needs from the server being assembled. */
export interface JoinOptions {
  servers: string[];
  nodeId: string;
  hub: Hub;
  followers: Followers;
  taps: StreamTaps;
  destinations: Destinations;
  alerts: AlertEngine;
  settings: () => Settings;
  logger: Logger;
  /** How long NATS may be unreachable before the alert fires, ms (default 5000). */
  alertAfterMs?: number;
}

/**
 * Joins the NATS cluster when servers are given (null otherwise): a link that
 * bridges the hub both ways, follows local interest, answers status requests
 * and raises the `cluster` alert when NATS stays unreachable. It connects on `start()`.
 */
export function joinCluster(o: JoinOptions): ClusterLink | null {
  if (o.servers.length === 0) return null;
  const link: ClusterLink = new ClusterLink({
    servers: o.servers, nodeId: o.nodeId, hub: o.hub, logger: o.logger,
    interest: () => interestSubjects({
      hub: o.hub,
      followed: () => [...o.followers.streams(), ...o.taps.streams()],
      destinations: () => o.destinations.list().map((d) => d.rule.stream),
      watched: () => o.settings().alert_silent_streams.map((r) => r.pattern),
    }),
    status: () => ({ ...nodeStatus(o.hub, o.nodeId, VERSION), nats: link.state() }),
    maxMessageBytes: () => o.settings().max_message_bytes,
    onDown: (down) => o.alerts.cluster(down && { ...down, servers: o.servers.map(shownServer) }),
    alertAfterMs: o.alertAfterMs ?? 5000,
  });
  o.hub.onDelivery((m) => link.deliver(m));
  return link;
}
