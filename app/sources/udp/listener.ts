import type { udp } from "bun";
import type { Logger } from "../../core/logger.ts";
import type { UdpFormat } from "../../core/udp-spec.ts";
import { PublishError, type Hub } from "../../hub/hub.ts";
import { RateWindow } from "../../core/rate.ts";
import { DatagramDecoder, type DatagramRules, type RejectReason } from "./datagram.ts";
import { kernelUdpStats } from "./kernel-drops.ts";
import { setReceiveBuffer } from "./socket-buffer.ts";

/** One sampled reject, for the log and GET /api/ingest. */
export interface RejectSample {
  ts: string;
  port: number;
  from: string;
  reason: RejectReason;
  detail: string;
  bytes: number;
}

/** A listener's figures as the API shows them. */
export interface UdpListenerStats {
  port: number;
  host: string;
  format: UdpFormat;
  stream: string | null;
  datagrams: number;
  bytes: number;
  accepted: number;
  rejected: number;
  rejected_by_reason: Partial<Record<RejectReason, number>>;
  errors: number;
  datagrams_per_second: number;
  accepted_per_second: number;
  accepted_per_second_1m: number;
  kernel_drops: number | null;
  kernel_rx_queue_bytes: number | null;
  receive_buffer_bytes: number | null;
}

/** Where a listener sends samples of its rejects. */
export interface RejectSink {
  (sample: RejectSample): void;
}

/**
 * One UDP port: decodes each datagram by its rules and publishes the messages
 * through the hub with origin `udp:<addr>:<port>`. Never throws out of the
 * socket handler, whatever arrives.
 */
export class UdpListener {
  private socket: udp.Socket<"buffer"> | null = null;
  private decoder: DatagramDecoder;
  datagrams = 0;
  bytes = 0;
  accepted = 0;
  errors = 0;
  readonly rejected: Partial<Record<RejectReason, number>> = {};
  private readonly rateIn = new RateWindow();
  private readonly rateAccepted = new RateWindow();
  private receiveBufferBytes: number | null = null;
  private lastPort = -1;
  private lastAddress = "";
  private lastOrigin = "";

  constructor(
    readonly host: string,
    readonly requestedPort: number,
    rules: DatagramRules,
    private readonly hub: Hub,
    private readonly onReject: RejectSink,
    private readonly logger: Logger,
  ) {
    this.decoder = new DatagramDecoder(rules);
  }

  /** The bound port (the requested one, or the one the OS picked for 0). */
  get port(): number {
    return this.socket?.port ?? this.requestedPort;
  }

  get rules(): DatagramRules {
    return this.decoder.rules;
  }

  /** Replaces the decoding rules; applies to the next datagram. */
  setRules(rules: DatagramRules): void {
    this.decoder = new DatagramDecoder(rules);
  }

  /** Binds the port and sizes its kernel receive buffer; throws an Error naming the port when it cannot bind. */
  async start(receiveBufferBytes = 0): Promise<void> {
    try {
      this.socket = await Bun.udpSocket({
        hostname: this.host,
        port: this.requestedPort,
        binaryType: "buffer",
        socket: { data: (_s, buf, port, address, flags) => this.receive(buf, port, address, flags.truncated) },
      });
    } catch (err) {
      throw new Error(`cannot listen for UDP on ${this.host}:${this.requestedPort}: ${(err as Error).message}`, { cause: err });
    }
    const fd = (this.socket as unknown as { fd?: number }).fd;
    if (receiveBufferBytes > 0 && typeof fd === "number") {
      const r = setReceiveBuffer(fd, receiveBufferBytes);
      this.receiveBufferBytes = r?.effective ?? null;
      if (!r) this.logger.warn("could not size the UDP receive buffer; the OS default applies", { port: this.port, asked: receiveBufferBytes });
      else if (!r.forced && r.effective < 2 * receiveBufferBytes) {
        this.logger.warn("UDP receive buffer capped by net.core.rmem_max; raise it for high rates (see docs/UDP.md, High UDP rates)", { port: this.port, asked: receiveBufferBytes, got: r.effective });
      }
    }
  }

  /** Handles one datagram. Public for tests that feed datagrams directly. */
  receive(buf: Uint8Array, port: number, address: string, truncated: boolean): void {
    this.datagrams++;
    this.bytes += buf.byteLength;
    this.rateIn.add();
    const sourceAllowed = this.decoder.rules.sourceAllowed;
    if (sourceAllowed && !sourceAllowed(address)) {
      this.reject("source_not_allowed", `sender ${address} is not allowed to send by UDP (settings access and udp_allow_sources)`, address, port, buf.byteLength);
      return;
    }
    try {
      const records = this.decoder.decode(buf, truncated);
      // The same sender again (the common case) reuses its origin string, which the hub can compare by identity.
      if (port !== this.lastPort || address !== this.lastAddress) {
        this.lastPort = port;
        this.lastAddress = address;
        this.lastOrigin = `udp:${address}:${port}`;
      }
      const origin = this.lastOrigin;
      for (const r of records) {
        if (!r.ok) {
          this.reject(r.reason, r.detail, address, port, buf.byteLength);
          continue;
        }
        try {
          this.hub.publish(r.stream, r.data, origin);
          this.accepted++;
          this.rateAccepted.add();
        } catch (err) {
          if (!(err instanceof PublishError)) throw err;
          this.reject(err.code === "too_large" ? "too_large" : err.code === "log_unavailable" ? "log_unavailable" : "bad_stream", err.message, address, port, buf.byteLength);
        }
      }
    } catch (err) {
      // A bug, not bad input: count it and keep the listener running.
      this.errors++;
      if (this.errors <= 10 || this.errors % 1000 === 0) this.logger.error("udp datagram handling failed", { port: this.port, from: `${address}:${port}`, error: err, count: this.errors });
    }
  }

  private reject(reason: RejectReason, detail: string, address: string, port: number, bytes: number): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    this.onReject({ ts: new Date().toISOString(), port: this.port, from: `${address}:${port}`, reason, detail, bytes });
  }

  /** Once a second: closes the rate windows. */
  tick(): void {
    this.rateIn.tick();
    this.rateAccepted.tick();
  }

  /** Figures for the API and /metrics. */
  stats(): UdpListenerStats {
    const kernel = this.socket ? kernelUdpStats(this.port) : null;
    const rejected = Object.values(this.rejected).reduce((a, b) => a + (b ?? 0), 0);
    return {
      port: this.port, host: this.host, format: this.rules.format, stream: this.rules.stream ?? null,
      datagrams: this.datagrams, bytes: this.bytes, accepted: this.accepted, rejected, rejected_by_reason: { ...this.rejected }, errors: this.errors,
      datagrams_per_second: this.rateIn.perSecond, accepted_per_second: this.rateAccepted.perSecond,
      accepted_per_second_1m: Math.round(this.rateAccepted.perMinute * 100) / 100,
      kernel_drops: kernel?.drops ?? null, kernel_rx_queue_bytes: kernel?.rxQueueBytes ?? null, receive_buffer_bytes: this.receiveBufferBytes,
    };
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
  }
}
