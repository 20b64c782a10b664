import type { Server } from "bun";
import type { ConfigSource, StartupConfig } from "../config/startup.ts";
import type { SettingsStore } from "../config/store.ts";
import type { Logger } from "../core/logger.ts";
import type { BookingControl } from "../relay/bookings.ts";
import type { Hub } from "../hub/hub.ts";
import type { RecentMessages } from "../sinks/recent.ts";
import type { Followers } from "../sinks/replay.ts";
import type { UdpIngest } from "../sources/udp/ingest.ts";
import type { AlertEngine } from "../alerts/engine.ts";
import type { Spool } from "../log/spool.ts";
import type { Destinations } from "../relay/destinations.ts";
import type { FeedRules } from "../relay/feeds.ts";
import type { SessionServer } from "../sources/relay-sessions.ts";
import type { AdminSessions } from "../auth/admin-session.ts";
import type { SignInLimiter } from "../auth/sign-in-limit.ts";
import type { RateHistory } from "../sinks/rate-history.ts";
import type { StreamTaps } from "../sinks/taps.ts";
import type { LogUsage } from "../log/usage.ts";
import type { Offloader } from "../log/offloader.ts";
import type { TlsState } from "../tls/server-tls.ts";
import type { ClusterLink } from "../cluster/link.ts";

/** Everything the HTTP routes need, set once when the app is assembled. */
export interface HttpDeps {
  hub: Hub;
  store: SettingsStore;
  config: StartupConfig;
  /** Where each startup value came from: flag, env, settings or default. */
  configSources: Partial<Record<keyof StartupConfig, ConfigSource>>;
  logger: Logger;
  /** Signing secret of stream tokens. */
  secret: string;
  /** Signing secret of admin tokens (read on each use: revoking replaces it). */
  adminTokenSecret: () => string;
  /** The secrets a token may verify with: this box's own and an imported practable relay secret (live). */
  verifyKeys: () => readonly string[];
  /** practable's booking control (deny and allow booking ids; relay sessions with their booking ids). */
  bookings: BookingControl;
  startedAt: number;
  recent: RecentMessages;
  /** Subscribers that resume (GET …/events follows a stream through one). */
  followers: Followers;
  udp: UdpIngest;
  destinations: Destinations;
  feeds: FeedRules;
  sessions: SessionServer;
  /** Folder that destination record files must stay inside. */
  recordsDir: string;
  alerts: AlertEngine;
  /** The Slack webhook URL in force and where it came from. */
  slackUrl: () => { url: string | null; source: "env" | "settings" | null };
  /** The durable log's spool: an HTTP publish answers after its message is fsynced. */
  spool: Spool;
  /** Admin UI sign-ins. */
  adminSessions: AdminSessions;
  signInLimiter: SignInLimiter;
  /** Per-second rates of each stream (dashboard sparklines). */
  rates: RateHistory;
  /** Live tails of single streams (stream page). */
  taps: StreamTaps;
  /** Disk use of the log. */
  logUsage: () => LogUsage;
  /** The log's offload to S3-compatible storage (absent in apps built without a server). */
  offloader?: Offloader;
  /** The TLS certificate and how it is kept (null: TLS off; absent in apps built without a server). */
  tls?: () => TlsState | null;
  /** The link to the NATS cluster (null or absent: not joined). */
  cluster?: ClusterLink | null;
}

/** What Hono's `c.env` holds when Bun serves the app. */
export interface HttpEnv {
  Bindings: { server?: Pick<Server<unknown>, "requestIP"> };
}
