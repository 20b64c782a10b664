import type { Settings } from "../../config/settings.ts";
import type { Logger } from "../../core/logger.ts";
import { compileStreamPatterns } from "../../core/stream-pattern.ts";
import { addressMatcher } from "../../core/cidr.ts";
import { isLoopback } from "../../auth/access.ts";
import type { UdpListenerSpec } from "../../core/udp-spec.ts";
import type { Hub } from "../../hub/hub.ts";
import type { DatagramRules } from "./datagram.ts";
import { UdpListener, type RejectSample, type UdpListenerStats } from "./listener.ts";

/** How many reject samples GET /api/ingest keeps. */
const KEEP_SAMPLES = 50;
/** At most one reject line in the log per this many ms (with the count of those not logged). */
const LOG_EVERY_MS = 10_000;

/** What UDP ingest needs: the hub, settings, the startup ports, a logger. */
export interface UdpIngestOptions {
  hub: Hub;
  settings: () => Settings;
  /** Main port (0: off), from --udp-port. */
  port: number;
  host: string;
  /** Extra listeners from --udp. */
  extra: UdpListenerSpec[];
  logger: Logger;
}

/** Everything GET /api/ingest shows. */
export interface UdpIngestSnapshot {
  listeners: UdpListenerStats[];
  totals: { datagrams: number; bytes: number; accepted: number; rejected: number; errors: number };
  recent_rejects: RejectSample[];
}

/**
 * Which UDP senders may publish. A datagram carries no credentials, so it is
 * judged by its source address: the operator's udp_allow_sources when set; else,
 * under access "token" (every client needs a token), only programs on the box;
 * under "open" and "loopback-open", any sender, as before.
 */
export function udpSources(settings: Pick<Settings, "access" | "udp_allow_sources">): ((address: string) => boolean) | undefined {
  if (settings.udp_allow_sources.length > 0) return addressMatcher(settings.udp_allow_sources);
  if (settings.access === "token") return isLoopback;
  return undefined;
}

/**
 * UDP ingest: the main port (format from the settings) and the extra listeners
 * (from --udp and the `udp_listeners` setting). Applies setting changes live:
 * new rules for the next datagram, listeners added and removed by port.
 */
export class UdpIngest {
  private readonly listeners = new Map<number, UdpListener>();
  private readonly samples: RejectSample[] = [];
  private lastLog = 0;
  private unlogged = 0;

  constructor(private readonly opts: UdpIngestOptions) {}

  /** Binds every listener; throws (naming the port) if one cannot be bound. */
  async start(): Promise<void> {
    await this.apply(this.opts.settings());
  }

  /** Brings listeners and rules in line with `settings` (called on every settings change). */
  async apply(settings: Settings): Promise<void> {
    const wanted = new Map<number, UdpListenerSpec>();
    if (this.opts.port !== 0) wanted.set(this.opts.port, { port: this.opts.port, format: settings.udp_format, ...(settings.udp_stream ? { stream: settings.udp_stream } : {}) });
    for (const spec of [...this.opts.extra, ...settings.udp_listeners]) {
      if (wanted.has(spec.port)) throw new Error(`UDP port ${spec.port} is configured twice (--udp-port, --udp and the udp_listeners setting must not overlap)`);
      wanted.set(spec.port, spec);
    }
    const allowed = compileStreamPatterns(settings.udp_allow);
    const sourceAllowed = udpSources(settings);
    const rules = (spec: UdpListenerSpec): DatagramRules => ({
      format: spec.format, stream: spec.stream, streamField: settings.udp_stream_field, maxBytes: settings.udp_max_datagram_bytes, allowed, sourceAllowed,
    });
    for (const [port, l] of this.listeners) {
      if (!wanted.has(port)) {
        l.close();
        this.listeners.delete(port);
        this.opts.logger.info("udp listener stopped", { port });
      }
    }
    for (const [port, spec] of wanted) {
      const existing = this.listeners.get(port);
      if (existing) {
        existing.setRules(rules(spec));
        continue;
      }
      const l = new UdpListener(this.opts.host, port, rules(spec), this.opts.hub, (s) => this.sample(s), this.opts.logger);
      await l.start(settings.udp_receive_buffer_bytes);
      this.listeners.set(port, l);
      this.opts.logger.info("udp listening", { address: `${this.opts.host}:${l.port}`, format: spec.format, stream: spec.stream ?? null });
    }
  }

  /** The listener on a port, if any. */
  listener(port: number): UdpListener | undefined {
    return this.listeners.get(port);
  }

  /** Once a second. */
  tick(): void {
    for (const l of this.listeners.values()) l.tick();
  }

  snapshot(): UdpIngestSnapshot {
    const listeners = [...this.listeners.values()].map((l) => l.stats());
    const sum = (k: "datagrams" | "bytes" | "accepted" | "rejected" | "errors") => listeners.reduce((a, l) => a + l[k], 0);
    return {
      listeners,
      totals: { datagrams: sum("datagrams"), bytes: sum("bytes"), accepted: sum("accepted"), rejected: sum("rejected"), errors: sum("errors") },
      recent_rejects: [...this.samples].reverse(),
    };
  }

  close(): void {
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
  }

  /** Keeps the latest rejects and logs at most one every 10 s, never one line per packet. */
  private sample(s: RejectSample): void {
    this.samples.push(s);
    if (this.samples.length > KEEP_SAMPLES) this.samples.shift();
    const now = Date.now();
    if (now - this.lastLog < LOG_EVERY_MS) {
      this.unlogged++;
      return;
    }
    this.opts.logger.warn("udp datagram rejected", { port: s.port, from: s.from, reason: s.reason, detail: s.detail, bytes: s.bytes, not_logged_since_last: this.unlogged });
    this.lastLog = now;
    this.unlogged = 0;
  }
}
