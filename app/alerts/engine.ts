import { statfsSync } from "node:fs";
import type { Settings } from "../config/settings.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { compileStreamPatterns, livePatterns } from "../core/stream-pattern.ts";
import type { Hub } from "../hub/hub.ts";
import type { UdpIngestSnapshot } from "../sources/udp/ingest.ts";
import type { Destination } from "../relay/destination.ts";
import { alertMessage, duration } from "./message.ts";
import type { SlackNotifier } from "./notifier.ts";
import type { OffloadStatus } from "../log/offloader.ts";
import { redactDestination, scrubDestination } from "../relay/secret-url.ts";

/** The alert rules. */
export type AlertRule = "destination_down" | "stream_silent" | "udp_rejects" | "backpressure" | "disk_space" | "log_compaction" | "log_write" | "log_damage" | "log_offload" | "lifecycle" | "tls_certificate" | "cluster";

/** One entry of the alert history (GET /api/alerts). */
export interface AlertRecord {
  ts: string;
  rule: AlertRule;
  subject: string;
  state: "firing" | "resolved" | "info";
  text: string;
  /** Sent to Slack (false: held back by the cooldown, or Slack not set up). */
  sent: boolean;
}

const HISTORY = 200;

/** What the rules look at, passed in. */
export interface AlertInputs {
  hub: Hub;
  settings: () => Settings;
  udp: () => UdpIngestSnapshot;
  destinations: () => Destination[];
  dataDir: string;
  host: string;
  version: string;
  logger: Logger;
  notifier: SlackNotifier;
  now?: () => number;
  /** Free and total bytes of the data dir's file system (tests replace it). */
  diskSpace?: () => { free: number; total: number };
  /** Ticks (seconds) over which UDP rejects and backpressure drops are judged; 60 unless a test shortens it. */
  windowTicks?: number;
  /** The durable log's write state: why it cannot write (null: it can), and the messages not stored since start. */
  log?: () => { failure: string | null; notStored: number };
}

interface Active {
  since: number;
  sent: boolean;
  /** Not sent because of the cooldown (rather than Slack not being set up): sent once the cooldown is over. */
  heldBack: boolean;
}

/**
 * Evaluates the alert rules once a second and tells Slack through the notifier:
 * a condition fires once, and resolves once when it clears. Per rule and subject
 * at most one message per cooldown; a condition that comes and goes within the
 * cooldown is held back and counted, and the next message says how often.
 */
export class AlertEngine {
  private readonly active = new Map<string, Active>();
  private readonly lastSent = new Map<string, number>();
  private readonly heldBack = new Map<string, number>();
  private readonly history: AlertRecord[] = [];
  private readonly downSince = new Map<string, number>();
  private readonly lastSeen = new Map<string, number>();
  private readonly watched = livePatterns(() => this.silentPatterns());
  private silentRules: Settings["alert_silent_streams"] | null = null;
  private silentPatternList: string[] = [];
  private compiledFor: Settings["alert_silent_streams"] | null = null;
  private compiledRules: { rule: Settings["alert_silent_streams"][number]; match: (s: string) => boolean }[] = [];
  private readonly udpWindow: { records: number; rejected: number }[] = [];
  private readonly dropWindow: number[] = [];
  private readonly now: () => number;

  constructor(private readonly inputs: AlertInputs) {
    this.now = inputs.now ?? Date.now;
    // Counting starts from zero, so what happens before the first tick is judged too.
    this.udpWindow.push({ records: 0, rejected: 0 });
    this.dropWindow.push(0);
  }

  /** Hub sink: notes when streams watched for silence last spoke. */
  onMessage(m: Message): void {
    if (this.watched(m.stream)) this.lastSeen.set(m.stream, this.now());
  }

  /** The silence rules' patterns, as one list that stays the same object while the setting does. */
  private silentPatterns(): string[] {
    const rules = this.inputs.settings().alert_silent_streams;
    if (rules !== this.silentRules) {
      this.silentRules = rules;
      this.silentPatternList = rules.map((r) => r.pattern);
    }
    return this.silentPatternList;
  }

  private offload: (() => { failingForMs: number; status: OffloadStatus }) | null = null;

  /** Watches the log's offload: the `log_offload` alert fires when it has failed for alert_offload_seconds. */
  watchOffload(read: () => { failingForMs: number; status: OffloadStatus }): void {
    this.offload = read;
  }

  private checkOffload(s: Settings): void {
    if (!this.offload) return;
    const { failingForMs, status } = this.offload();
    if (s.alert_offload_seconds > 0 && s.offload_enabled && failingForMs > s.alert_offload_seconds * 1000) {
      this.fire("log_offload", "log", `Offloading the log to S3 has failed for ${duration(failingForMs)}`, [
        `bucket ${status.bucket}${status.endpoint ? ` at ${status.endpoint}` : ""}`,
        `last error: ${status.last_error ?? "unknown"}`,
        `${status.pending_files} files (${status.pending_bytes} bytes) wait to be verified remote; local retention keeps them, so the disk use grows until this works`,
      ]);
    } else if (failingForMs === 0 || !s.offload_enabled) {
      this.resolve("log_offload", "log", "Offloading the log to S3 works again", []);
    }
  }

  /** Evaluates every rule; call once a second. */
  tick(): void {
    const s = this.inputs.settings();
    const now = this.now();
    this.checkDestinations(s, now);
    this.checkSilence(s, now);
    this.checkUdp(s);
    this.checkBackpressure(s);
    this.checkDisk(s);
    this.checkLog(s);
    this.checkOffload(s);
  }

  /** Damage found in the spool at start (kept in place, readable records kept): one message listing it. */
  logDamaged(damage: { file: string; offset: number; bytes: number; reason: string; records: number | null; missing: string[] }[]): void {
    if (damage.length === 0 || !this.inputs.settings().alert_log_compaction) return;
    const details = damage.slice(0, 10).map((d) => `${d.file} at byte ${d.offset}: ${d.bytes} bytes unreadable (${d.reason}); records lost: ${d.records ?? "unknown"}${d.missing.length ? `; seqs missing: ${d.missing.join(", ")}` : ""}`);
    if (damage.length > 10) details.push(`and ${damage.length - 10} more (see the server log)`);
    details.push("the files are kept in DATA_DIR/spool with every readable record");
    const headline = `The log found ${damage.length} damaged stretch${damage.length === 1 ? "" : "es"} in its spool at start`;
    const sent = this.send(alertMessage({ headline, details, host: this.inputs.host }));
    this.record("log_damage", "spool", "info", `${headline}: ${details.join("; ")}`, sent);
  }

  /** A TLS certificate reload or ACME order failed (`error`), or works again (null). Always on: an expiring certificate takes the box off the air. */
  certificate(error: string | null): void {
    if (error === null) this.resolve("tls_certificate", "tls", "TLS certificate renewed", []);
    else this.fire("tls_certificate", "tls", "TLS certificate could not be renewed or reloaded", [`error: ${error}`, "the current certificate keeps serving until it expires"]);
  }

  /** NATS has been unreachable for a while (`down`), or is connected again (null). Always on: the node is cut off from the cluster. */
  cluster(down: { since: number; error: string | null; servers: string[] } | null): void {
    if (down === null) this.resolve("cluster", "nats", "Connected to the NATS cluster again", []);
    else this.fire("cluster", "nats", "Cut off from the NATS cluster", [`unreachable since ${new Date(down.since).toISOString()}: ${down.error ?? "no answer"}`, `servers: ${down.servers.join(", ")}`, "local clients are served as before; messages to and from other nodes wait in a bounded buffer or are lost"], undefined, down.since);
  }

  /** A compaction run's outcome: a failure fires the `log_compaction` alert, the next success resolves it. */
  compaction(outcome: { ok: true } | { ok: false; error: string }): void {
    if (!this.inputs.settings().alert_log_compaction) return;
    if (outcome.ok) this.resolve("log_compaction", "log", "Log compaction works again", []);
    else this.fire("log_compaction", "log", "Log compaction is failing", [`error: ${outcome.error}`, "sealed spool segments wait in DATA_DIR/spool until it works"]);
  }

  /** "Switchyard started" (with version and host). */
  started(): void {
    if (this.inputs.settings().alert_lifecycle) this.info("lifecycle", "started", `Switchyard ${this.inputs.version} started`);
  }

  /** "Switchyard stopping"; waits a little for Slack so the message gets out. */
  async stopping(): Promise<void> {
    if (!this.inputs.settings().alert_lifecycle) return;
    this.info("lifecycle", "stopping", `Switchyard ${this.inputs.version} is stopping`);
    await this.inputs.notifier.drain(3000);
  }

  /** Stops the notifier (after `stopping`): nothing more is sent, nothing keeps the process up. */
  close(): void {
    this.inputs.notifier.stop();
  }

  /** History, newest first, and what is firing now. */
  snapshot() {
    return {
      alerts: [...this.history].reverse(),
      firing: [...this.active.entries()].map(([key, a]) => ({ rule: key.split("\u0000")[0], subject: key.split("\u0000")[1], since: new Date(a.since).toISOString() })),
      slack: this.inputs.notifier.stats(),
    };
  }

  private link(path: string): string | undefined {
    const base = this.inputs.settings().public_url;
    return base ? `${base.replace(/\/+$/, "")}${path}` : undefined;
  }

  private checkDestinations(s: Settings, now: number): void {
    const limit = s.alert_destination_down_seconds * 1000;
    const seen = new Set<string>();
    for (const d of this.inputs.destinations()) {
      const id = d.rule.id;
      seen.add(id);
      if (d.status.up || d.status.state === "stopped") {
        this.downSince.delete(id);
        this.resolve("destination_down", id, `Destination ${id} is connected again (stream ${d.rule.stream})`, [], `/admin/destinations#d-${id}`);
        continue;
      }
      if (!this.downSince.has(id)) this.downSince.set(id, now);
      const down = now - this.downSince.get(id)!;
      if (limit > 0 && down >= limit) {
        const where = redactDestination(d.rule.destination, d.rule.kind).replace(/^[a-z]+:\/\//, "");
        this.fire("destination_down", id, `Destination ${id} disconnected for ${duration(down)}`, [
          `stream ${d.rule.stream} → ${where}`,
          `state ${d.status.state}, ${d.status.dropped} messages dropped`,
          ...waiting(d),
          ...(d.status.lastError ? [`last error: ${scrubDestination(d.status.lastError, d.rule)}`] : []),
        ], `/admin/destinations#d-${id}`, now - down);
      }
    }
    for (const id of this.downSince.keys()) if (!seen.has(id)) this.downSince.delete(id);
  }

  private checkSilence(s: Settings, now: number): void {
    if (this.compiledFor !== s.alert_silent_streams) {
      this.compiledFor = s.alert_silent_streams;
      this.compiledRules = s.alert_silent_streams.map((r) => ({ rule: r, match: compileStreamPatterns([r.pattern]) }));
    }
    for (const [stream, last] of this.lastSeen) {
      const rule = this.compiledRules.find((r) => r.match(stream))?.rule;
      if (!rule) {
        this.lastSeen.delete(stream);
        continue;
      }
      const quiet = now - last;
      if (quiet > rule.seconds * 1000) {
        this.fire("stream_silent", stream, `Stream ${stream} has been silent for ${duration(quiet)}`, [`it must speak every ${rule.seconds} s (pattern ${rule.pattern})`], `/admin/streams/${encodeURIComponent(stream)}`, last);
      } else {
        this.resolve("stream_silent", stream, `Stream ${stream} is speaking again`, [], `/admin/streams/${encodeURIComponent(stream)}`);
      }
    }
  }

  private checkUdp(s: Settings): void {
    const t = this.inputs.udp().totals;
    this.udpWindow.push({ records: t.accepted + t.rejected, rejected: t.rejected });
    if (this.udpWindow.length > (this.inputs.windowTicks ?? 60) + 1) this.udpWindow.shift();
    if (s.alert_udp_reject_percent === 0 || this.udpWindow.length < 2) return;
    const first = this.udpWindow[0]!, last = this.udpWindow[this.udpWindow.length - 1]!;
    const records = last.records - first.records, rejected = last.rejected - first.rejected;
    const pct = records > 0 ? (100 * rejected) / records : 0;
    if (records >= 20 && pct > s.alert_udp_reject_percent) {
      const reasons = new Map<string, number>();
      for (const l of this.inputs.udp().listeners) for (const [r, n] of Object.entries(l.rejected_by_reason)) reasons.set(r, (reasons.get(r) ?? 0) + (n ?? 0));
      const top = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([r, n]) => `${r} ${n}`).join(", ");
      this.fire("udp_rejects", "udp", `${pct.toFixed(0)}% of UDP records rejected in the last minute`, [`${rejected} of ${records}; the limit is ${s.alert_udp_reject_percent}%`, `reasons since start: ${top}`], "/admin");
    } else if (pct <= s.alert_udp_reject_percent) {
      this.resolve("udp_rejects", "udp", "UDP rejects are back under the limit", [`${pct.toFixed(1)}% over the last minute`], "/admin");
    }
  }

  private checkBackpressure(s: Settings): void {
    const hub = this.inputs.hub;
    const total = hub.totals.slowDisconnects + hub.droppedTotal();
    this.dropWindow.push(total);
    if (this.dropWindow.length > (this.inputs.windowTicks ?? 60) + 1) this.dropWindow.shift();
    if (!s.alert_backpressure || this.dropWindow.length < 2) return;
    const grew = Math.max(0, this.dropWindow[this.dropWindow.length - 1]! - this.dropWindow[0]!);
    if (grew > 0) {
      const worst = hub.listStreams().filter((x) => x.dropped > 0 || x.slowDisconnects > 0).sort((a, b) => b.dropped - a.dropped).slice(0, 3)
        .map((x) => `${x.name}: ${x.dropped} dropped, ${x.slowDisconnects} disconnected`);
      this.fire("backpressure", "subscribers", "Slow subscribers are losing messages", [`${grew} messages dropped or subscribers disconnected in the last minute`, ...worst], "/admin");
    } else {
      this.resolve("backpressure", "subscribers", "Subscribers are keeping up again", [], "/admin");
    }
  }

  private checkDisk(s: Settings): void {
    if (s.alert_disk_free_percent === 0) return;
    let space: { free: number; total: number };
    try {
      if (this.inputs.diskSpace) space = this.inputs.diskSpace();
      else {
        const f = statfsSync(this.inputs.dataDir);
        space = { free: f.bavail * f.bsize, total: f.blocks * f.bsize };
      }
    } catch {
      return;
    }
    const pct = space.total > 0 ? (100 * space.free) / space.total : 100;
    const gib = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;
    if (pct < s.alert_disk_free_percent) {
      this.fire("disk_space", this.inputs.dataDir, `Disk space low: ${pct.toFixed(1)}% free`, [`${gib(space.free)} of ${gib(space.total)} free for ${this.inputs.dataDir}; the limit is ${s.alert_disk_free_percent}%`]);
    } else if (pct >= s.alert_disk_free_percent + 1) {
      this.resolve("disk_space", this.inputs.dataDir, "Disk space is back over the limit", [`${pct.toFixed(1)}% free`]);
    }
  }

  private checkLog(s: Settings): void {
    const log = this.inputs.log?.();
    if (!log || !s.alert_log_compaction) return;
    if (log.failure !== null) {
      this.fire("log_write", "log", "The log cannot write: messages are not being stored", [
        `error: ${log.failure}`,
        s.log_deliver_unlogged ? "they are still delivered live (setting log_deliver_unlogged)" : "publishes to logged streams are refused (HTTP 503, websocket close 1013) until it can",
        `${log.notStored} messages not stored since start`,
      ]);
    } else {
      this.resolve("log_write", "log", "The log can write again", [`${log.notStored} messages not stored since start`]);
    }
  }

  private fire(rule: AlertRule, subject: string, headline: string, details: string[], path?: string, since = this.now()): void {
    const key = `${rule}\u0000${subject}`;
    const now = this.now();
    const cooldown = this.inputs.settings().alert_cooldown_seconds * 1000;
    const last = this.lastSent.get(key);
    const current = this.active.get(key);
    if (current) {
      // Held back by the cooldown and still going on: once the cooldown is over, say so.
      if (current.heldBack && (last === undefined || now - last >= cooldown)) {
        this.active.delete(key);
        this.heldBack.set(key, Math.max(0, (this.heldBack.get(key) ?? 1) - 1));
        this.fire(rule, subject, headline, details, path, current.since);
      }
      return;
    }
    const held = this.heldBack.get(key) ?? 0;
    let sent = false;
    let heldBack = false;
    if (last === undefined || now - last >= cooldown) {
      const extra = held > 0 ? [`(also fired ${held} time${held === 1 ? "" : "s"} since the last message, held back by the cooldown)`] : [];
      sent = this.send(alertMessage({ headline, details: [...details, `since ${new Date(since).toISOString()}`, ...extra], host: this.inputs.host, link: path ? this.link(path) : undefined }));
      if (sent) {
        this.lastSent.set(key, now);
        this.heldBack.delete(key);
      }
    } else {
      this.heldBack.set(key, held + 1);
      heldBack = true;
    }
    // Firing is recorded once per episode; without Slack (or with its queue full) it is not tried again each second.
    this.active.set(key, { since, sent, heldBack });
    this.record(rule, subject, "firing", headline, sent);
  }

  private resolve(rule: AlertRule, subject: string, headline: string, details: string[], path?: string): void {
    const key = `${rule}\u0000${subject}`;
    const a = this.active.get(key);
    if (!a) return;
    this.active.delete(key);
    // Only an alert Slack heard about gets its all-clear.
    const sent = a.sent && this.send(alertMessage({ headline: `Resolved: ${headline}`, details: [...details, `it began ${new Date(a.since).toISOString()}, ${duration(this.now() - a.since)} ago`], host: this.inputs.host, link: path ? this.link(path) : undefined }));
    this.record(rule, subject, "resolved", headline, sent);
  }

  private info(rule: AlertRule, subject: string, headline: string): void {
    const sent = this.send(alertMessage({ headline, details: [`pid ${process.pid}`], host: this.inputs.host }));
    this.record(rule, subject, "info", headline, sent);
  }

  private send(message: ReturnType<typeof alertMessage>): boolean {
    return this.inputs.notifier.enqueue(message);
  }

  private record(rule: AlertRule, subject: string, state: AlertRecord["state"], text: string, sent: boolean): void {
    this.history.push({ ts: new Date(this.now()).toISOString(), rule, subject, state, text, sent });
    if (this.history.length > HISTORY) this.history.shift();
    this.inputs.logger.info("alert", { rule, subject, state, text, sent });
  }
}

/** A store-and-forward destination's backlog, for its down alert: how much waits in the log for it. */
function waiting(d: Destination): string[] {
  const r = d.status.resume?.() as { backlog_messages?: number; backlog_age_seconds?: number | null } | undefined;
  if (!r || typeof r.backlog_messages !== "number") return [];
  const age = typeof r.backlog_age_seconds === "number" ? `, the oldest from ${duration(r.backlog_age_seconds * 1000)} ago` : "";
  return [`${r.backlog_messages} messages waiting in the log${age}: they are sent, in order, when it is back`];
}
