import type { Server } from "bun";
import { newTokenSecret } from "./auth/stream-token.ts";
import type { ConfigSource, StartupConfig } from "./config/startup.ts";
import type { SettingsStore } from "./config/store.ts";
import { systemClock, type Clock } from "./core/clock.ts";
import type { Logger } from "./core/logger.ts";
import type { Connection } from "./hub/connection.ts";
import { BunTopicFanOut } from "./hub/fanout.ts";
import { Hub } from "./hub/hub.ts";
import { RecentMessages } from "./sinks/recent.ts";
import { Followers } from "./sinks/replay.ts";
import { CLOSE, keepaliveSweep, streamSocketHandlers, upgradeStream, WS_PREFIX } from "./sources/websocket.ts";
import { UdpIngest } from "./sources/udp/ingest.ts";
import { Destinations } from "./relay/destinations.ts";
import { newNodeKey } from "./relay/relay-link.ts";
import { FeedRules } from "./relay/feeds.ts";
import { SESSION_PREFIX, SessionServer } from "./sources/relay-sessions.ts";
import type { Backoff } from "./relay/status.ts";
import { join } from "node:path";
import { hostname } from "node:os";
import { AlertEngine } from "./alerts/engine.ts";
import { SlackNotifier } from "./alerts/notifier.ts";
import { slackWebhookUrl } from "./alerts/webhook-url.ts";
import { VERSION } from "./version.ts";
import { Spool } from "./log/spool.ts";
import { Compactor } from "./log/compactor.ts";
import { Offloader } from "./log/offloader.ts";
import { offloadCredentials } from "./log/s3-store.ts";
import { livePatterns } from "./core/stream-pattern.ts";
import { createHttpApp } from "./http/app.ts";
import { lastResortError } from "./http/errors.ts";
import { screenRequest } from "./http/request-guard.ts";
import { ensureAdminAccount } from "./auth/admin-account.ts";
import { AdminSessions } from "./auth/admin-session.ts";
import { adminTokenSecret } from "./auth/admin-token.ts";
import { SignInLimiter } from "./auth/sign-in-limit.ts";
import { RateHistory } from "./sinks/rate-history.ts";
import { StreamTaps } from "./sinks/taps.ts";
import { logUsageReader } from "./log/usage.ts";
import { localUrl, removeServerFile, writeServerFile } from "./config/server-file.ts";
import { BookingControl } from "./relay/bookings.ts";
import { relaySecret } from "./relay/relay-secret.ts";
import { ServerTls } from "./tls/server-tls.ts";
import { RotatingListener } from "./tls/listener.ts";
import { trustCaFile } from "./tls/outbound.ts";
import { closeQueryPool, findQueryPool, reportQueryPool } from "./analytics/run-query.ts";
import { joinCluster } from "./cluster/join.ts";
import { CLUSTER_ORIGIN_PREFIX, fromCluster, type ClusterLink } from "./cluster/link.ts";

/** What `startServer` needs. */
export interface ServerOptions {
  config: StartupConfig;
  /** Where each startup value came from (shown on the Settings page). */
  configSources?: Partial<Record<keyof StartupConfig, ConfigSource>>;
  store: SettingsStore;
  logger: Logger;
  /** The time every part reads (message timestamps, stream idling, alert silences and cooldowns); tests move it. */
  clock?: Clock;
  /** Reconnect timing of destinations (tests shorten it). */
  backoff?: Backoff;
  /** Retry timing of Slack sends (tests shorten it). */
  slackRetryMs?: number;
  /** Free and total bytes of the data dir's file system (tests replace it). */
  diskSpace?: () => { free: number; total: number };
  /** Seconds over which UDP rejects and drops are judged for alerts (tests shorten it). */
  alertWindowTicks?: number;
  /** First retry after a failed ACME renewal (tests shorten it). */
  acmeRetryMs?: number;
  /** How long NATS may be unreachable before the cluster alert fires, ms (tests shorten it). */
  clusterAlertMs?: number;
  /** Longest wait between retries of a failing log offload (tests shorten it). */
  offloadRetryMaxMs?: number;
}

/** A running Switchyard: its address, hub, and a graceful stop. */
export interface RunningServer {
  port: number;
  url: string;
  hub: Hub;
  udp: UdpIngest;
  recent: RecentMessages;
  destinations: Destinations;
  alerts: AlertEngine;
  spool: Spool;
  compactor: Compactor;
  offloader: Offloader;
  /** The Hono app (for `app.request` in tests). */
  app: ReturnType<typeof createHttpApp>;
  server: Server<Connection>;
  /** HTTPS: the certificate, its reload or renewal (null when TLS is off). */
  tls: ServerTls | null;
  /** The link to the NATS cluster (null: not joined). */
  cluster: ClusterLink | null;
  /** Stops accepting, closes every websocket with 1001, and stops the server. */
  stop(): Promise<void>;
}

/** Name of the stream-token signing secret in the settings store. */
export const TOKEN_SECRET_NAME = "stream_token_secret";

/** Starts the hub, the HTTP/websocket server and the UDP listeners on the configured hosts and ports. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { config, store, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const secret = store.secret(TOKEN_SECRET_NAME, newTokenSecret);
  await ensureAdminAccount(store, config.dataDir, logger);
  const settings = () => store.settings;
  const boot = store.settings;
  // A sealed segment may start a compaction run before its time (Compactor.sealed): set once the compactor is.
  let onSeal = () => {};
  const spool = Spool.open(join(config.dataDir, "spool"), { segmentBytes: boot.log_segment_bytes, segmentSeconds: boot.log_segment_seconds, fsyncMs: boot.log_fsync_ms, logger, now: () => clock.nowMillis(),
    retention: () => ({ days: store.settings.log_retention_days, bytes: store.settings.log_retention_bytes }), onSeal: () => onSeal() });
  spool.enforceRetention();
  logger.info("spool recovered", { segments: spool.recovery.segments, records: spool.recovery.records, truncated: spool.recovery.truncated.length, damaged: spool.recovery.damaged.length });
  const excluded = livePatterns(() => store.settings.log_exclude);
  // Streams keep counting up from where the log left them, across restarts.
  const hub = new Hub({ settings, clock, logger, lastSeq: (stream) => spool.lastSeq.get(stream) ?? 0,
    log: { failure: () => spool.failure, logs: (stream, origin) => !excluded(stream) && !origin?.startsWith(CLUSTER_ORIGIN_PREFIX), takeLost: () => spool.takeLost() } });
  // The log comes first among the sinks: it is the system of record. A message from another
  // node is in the log of the node it entered through (docs/CLUSTER.md), not here.
  hub.onMessage((m) => {
    if (!excluded(m.stream) && !fromCluster(m)) spool.append(m);
  });
  hub.onBeforeDelivery(() => spool.flush());
  const recent = new RecentMessages(settings);
  // Recent messages are "seen" (GET …/messages): they join at delivery, after the log has them.
  hub.onDelivery((m) => recent.add(m));
  const followers = new Followers({ recent, lastSeq: (stream) => hub.lastDeliveredSeq(stream), logs: (stream) => !excluded(stream), log: { dataDir: config.dataDir, nodeId: config.nodeId, settings },
    limitBytes: () => settings().backpressure_limit_bytes, logger, sent: (m) => hub.countOut(m) });
  hub.onDelivery((m) => followers.deliver(m));
  const udp = new UdpIngest({ hub, settings, port: config.udpPort, host: config.udpHost, extra: config.udp, logger });
  // The ticker's, once it runs (below): brings an idle box's next tick forward.
  let wake = () => {};
  const destinations = new Destinations({
    db: store.db, hub, logger, backoff: opts.backoff, started: () => wake(),
    bufferLimit: () => store.settings.relay_buffer_bytes,
    recordMaxBytes: () => store.settings.relay_record_max_bytes,
    silenceMs: () => store.settings.relay_silence_seconds * 1000,
    resume: {
      follow: { ...followers.deps, limitBytes: () => store.settings.relay_buffer_bytes },
      limits: () => ({ messagesPerSecond: store.settings.relay_catchup_messages_per_second, bytesPerSecond: store.settings.relay_catchup_bytes_per_second }),
      nodeKey: store.secret("relay_node_key", newNodeKey),
    },
  });
  hub.onDelivery((m) => destinations.deliver(m));
  const taps = new StreamTaps();
  hub.onDelivery((m) => taps.deliver(m));
  const rates = new RateHistory(hub);
  const feeds = new FeedRules(store.db, hub);
  feeds.load();
  // Tokens verify with this box's secret or an imported practable relay secret (read live: it can be set while running).
  const verifyKeys = () => {
    const imported = relaySecret(config.relaySecret, store).secret;
    return imported ? [secret, imported] : [secret];
  };
  const bookings = new BookingControl(hub);
  let listenPort = 0;
  // Without public_url, a relay token's audience must name this box as it listens: its own
  // addresses, and under TLS the certificate's names too (https://, with the port unless 443).
  const localBases = () => {
    const hosts = ["127.0.0.1", "localhost", "[::1]", ...(["0.0.0.0", "::", "127.0.0.1", "localhost"].includes(config.host) ? [] : [config.host.includes(":") ? `[${config.host}]` : config.host])];
    if (!tls) return hosts.map((h) => `http://${h}:${listenPort}`);
    const names = tls.state().names.filter((n) => !hosts.includes(n));
    return [...hosts.map((h) => `https://${h}:${listenPort}`), ...names.map((n) => (listenPort === 443 ? `https://${n}` : `https://${n}:${listenPort}`))];
  };
  const sessions = new SessionServer({ keys: verifyKeys, settings, localBases, bookings });
  const recordsDir = join(config.dataDir, "records");
  const slackUrl = () => slackWebhookUrl(config.slackWebhookUrl, store);
  const notifier = new SlackNotifier(() => slackUrl().url, logger, { baseDelayMs: opts.slackRetryMs });
  const alerts = new AlertEngine({
    hub, settings, udp: () => udp.snapshot(), destinations: () => destinations.list(), dataDir: config.dataDir,
    host: hostname(), version: VERSION, logger, notifier, diskSpace: opts.diskSpace, windowTicks: opts.alertWindowTicks, now: () => clock.nowMillis(),
    log: () => ({ failure: spool.failure, notStored: hub.totals.refusedUnlogged + hub.totals.deliveredUnlogged }),
  });
  alerts.logDamaged(spool.recovery.damaged);
  const cluster = joinCluster({ servers: config.nats, nodeId: config.nodeId, hub, followers, taps, destinations, alerts, settings, logger, alertAfterMs: opts.clusterAlertMs });
  hub.onMessage((m) => alerts.onMessage(m));
  const offloader = new Offloader({
    dataDir: config.dataDir, nodeId: config.nodeId, settings, logger, retryMaxMs: opts.offloadRetryMaxMs,
    credentials: () => offloadCredentials(config.s3Credentials, store),
  });
  alerts.watchOffload(() => ({ failingForMs: offloader.failingForMs(), status: offloader.status() }));
  const compactor = new Compactor({
    spool, logsDir: join(config.dataDir, "logs"), intervalSeconds: () => store.settings.log_compact_seconds, logger,
    retention: () => ({ days: store.settings.log_retention_days, bytes: store.settings.log_retention_bytes }),
    offload: () => store.settings.offload_enabled,
    memoryMb: () => store.settings.log_compact_memory_mb,
    onOutcome: (o) => {
      alerts.compaction(o);
      offloader.kick();
    },
    inQueryProcess: (job, timeoutMs) => findQueryPool(join(config.dataDir, "logs"))?.compact(job, timeoutMs) ?? null,
  });
  onSeal = () => compactor.sealed();
  // The query processes report files they quarantined, and kills: the log and the compaction alert hear of them.
  reportQueryPool(join(config.dataDir, "logs"), {
    onQuarantine: (q) => {
      logger.error("log: moved an unreadable Parquet file to quarantine", { file: q.from, to: q.to, reason: q.reason });
      alerts.compaction({ ok: false, error: `${q.from} moved to ${q.to || "(could not be moved)"}: ${q.reason}` });
    },
    onKill: (reason) => logger.warn("query process killed", { reason }),
  });
  const startedAt = Date.now();
  const app = createHttpApp({ hub, store, config, configSources: opts.configSources ?? {}, logger, secret, adminTokenSecret: () => adminTokenSecret(store), verifyKeys, bookings, startedAt, recent, followers, udp, destinations, feeds, sessions, recordsDir, alerts, slackUrl, spool,
    adminSessions: new AdminSessions(store), signInLimiter: new SignInLimiter(), rates, taps, logUsage: logUsageReader(config.dataDir), offloader, tls: () => tls?.state() ?? null, cluster });
  const wsDeps = { hub, settings, secret: verifyKeys, logger, isDenied: (bid: string) => bookings.isDenied(bid), followers,
    log: { commitWaiter: () => spool.commitWaiter(), appended: () => spool.stats.appended, logs: (stream: string) => !excluded(stream) } };
  trustCaFile(boot.tls_ca_file);

  let tls: ServerTls | null;
  try {
    tls = await ServerTls.start({ config, logger, acmeRetryMs: opts.acmeRetryMs, onOutcome: (error) => alerts.certificate(error) });
  } catch (err) {
    spool.close();
    await destinations.stop();
    throw err;
  }
  let listener: RotatingListener;
  let server: Server<Connection>;
  try {
    listener = new RotatingListener({
    hostname: config.host,
    port: config.port,
    // Production mode, always: an error never shows Bun's development page or source.
    development: false,
    // Bun's cap counts chunked bodies too, and /ts/{stream} bodies are long-lived streams, so
    // it is set out of the way: every route has its own limit (app/http/body.ts), checked on
    // Content-Length before routing (screenRequest) and while reading (413 naming the limit).
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    fetch(req, srv) {
      const screened = screenRequest(req, store.settings.max_message_bytes, logger);
      if (screened instanceof Response) return screened;
      const { url } = screened;
      if (url.pathname.startsWith(WS_PREFIX)) return upgradeStream(req, url, srv, wsDeps);
      if (url.pathname.startsWith(SESSION_PREFIX) && req.method === "GET") {
        return sessions.upgrade(req, url, decodeURIComponent(url.pathname.slice(SESSION_PREFIX.length)), srv);
      }
      return app.fetch(req, { server: srv });
    },
    error: lastResortError(logger),
    websocket: {
      ...streamSocketHandlers(wsDeps),
      // Frames up to twice the limit reach the handler, which closes with 1009 and a reason naming the limit.
      maxPayloadLength: 2 * boot.max_message_bytes,
      backpressureLimit: hub.nativeBackpressureLimit(boot.max_message_bytes),
      closeOnBackpressureLimit: false,
      // A backstop only: the keepalive sweep closes silent connections first, with a close frame.
      idleTimeout: Math.min(960, boot.keepalive_seconds + 8),
      sendPings: true,
      perMessageDeflate: false,
    },
    }, tls?.tlsOptions(), () => store.settings.hsts_seconds);
    server = listener.server;
  } catch (err) {
    tls?.stop();
    spool.close();
    await destinations.stop();
    throw new Error(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`, { cause: err });
  }
  hub.attachFanOut(tls ? listener.fanOut() : new BunTopicFanOut(server));
  tls?.attach(listener, server.port!);
  try {
    await udp.start();
  } catch (err) {
    udp.close();
    tls?.stop();
    await listener.stop(true);
    await destinations.stop();
    spool.close();
    throw err;
  }
  destinations.load();
  compactor.start();
  cluster?.start();
  offloader.start();
  store.onChange((next, previous) => {
    if (Object.keys(next).some((k) => k.startsWith("offload_") && next[k as keyof typeof next] !== previous[k as keyof typeof previous])) offloader.kick();
    udp.apply(next).catch((err) => logger.error("udp listeners could not be changed", { error: err }));
    try {
      trustCaFile(next.tls_ca_file);
    } catch (err) {
      logger.error("tls_ca_file not applied", { error: err });
    }
  });
  // Once a second while anything is going on (clients, streams, destinations, UDP traffic, a
  // firing alert); every 10 s on an idle box, so it wakes rarely (alert checks such as disk space
  // still run, a little later). A stream or a destination that starts on an idle box brings the
  // next tick forward to within a second, so what it is watched for (a silent stream, a destination
  // down, rejects, slow subscribers) is not up to 10 s late.
  let ticker: ReturnType<typeof setTimeout>;
  let ticking = true; // until stop
  let nextTickAt = 0;
  const scheduleTick = (ms: number) => {
    clearTimeout(ticker);
    nextTickAt = Date.now() + ms;
    ticker = setTimeout(tick, ms);
  };
  let datagrams = 0;
  const busy = () => {
    const seen = udp.snapshot().totals.datagrams;
    const moved = seen !== datagrams;
    datagrams = seen;
    return moved || hub.connections > 0 || hub.listStreams().length > 0 || destinations.list().length > 0 || alerts.snapshot().firing.length > 0;
  };
  const tick = () => {
    hub.tick();
    rates.sample();
    udp.tick();
    alerts.tick();
    keepaliveSweep(hub.listStreams().flatMap((s) => [...s.connections]), boot.keepalive_seconds * 1000);
    listener.sweep();
    scheduleTick(busy() ? 1000 : 10_000);
  };
  scheduleTick(1000);
  wake = () => {
    if (ticking && nextTickAt - Date.now() > 1000) scheduleTick(1000);
  };
  hub.onStreamEvent((e) => {
    if (e.event === "stream_added") wake();
  });
  alerts.started();
  const port = server.port!;
  const scheme = tls ? "https" : "http";
  // Where the CLI (switchyard settings set) finds this server to apply changes live.
  try {
    writeServerFile(config.dataDir, { pid: process.pid, url: localUrl(config.host, port).replace(/^http:/, `${scheme}:`), tlsName: tls?.state().names.find((n) => !/^[\d.]+$|:/.test(n)) });
  } catch (err) {
    // A full disk must not stop the hub from serving; only `settings set` loses its way to apply live.
    logger.warn("could not write server.json: `switchyard settings set` will store changes for the next start instead of applying them live", { error: err });
  }
  listenPort = port;
  logger.info("switchyard listening", { [scheme]: `${scheme}://${config.host}:${port}`, websocket: `${tls ? "wss" : "ws"}://${config.host}:${port}/ws/{stream}`, data_dir: config.dataDir, access: boot.access });

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      ticking = false;
      clearTimeout(ticker);
      await cluster?.stop();
      await compactor.stop();
      await offloader.stop();
      await closeQueryPool(join(config.dataDir, "logs"));
      await alerts.stopping();
      alerts.close();
      udp.close();
      tls?.stop();
      void listener.stop(false);
      const open = hub.allConnections();
      for (const c of open) {
        c.closing = true;
        c.ws?.close(CLOSE.goingAway, "server shutting down");
      }
      // Give close frames a moment to go out before the sockets are cut.
      const deadline = Date.now() + 2000;
      while (hub.connections > 0 && Date.now() < deadline) await Bun.sleep(20);
      await listener.stop(true);
      await destinations.stop();
      spool.close();
      removeServerFile(config.dataDir, process.pid);
      logger.info("switchyard stopped", { closed_connections: open.length });
    })());

  return { port, url: `${scheme}://127.0.0.1:${port}`, tls, hub, udp, recent, destinations, alerts, spool, compactor, offloader, app, server, cluster, stop };
}
