import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import type { Server, TLSOptions } from "bun";
import type { Logger } from "../core/logger.ts";
import { AcmeCertificates, type AcmeState } from "./acme.ts";
import { readCertificatePair, type CertificatePair } from "./certificate.ts";
import type { RotatingListener } from "./listener.ts";
import { startRedirectServer } from "./redirect.ts";
import { ACME_DIRECTORIES, redirectPortOf, tlsMode, type TlsStartup } from "./startup.ts";

/** What the Settings page, the dashboard and GET /api/tls show. */
export interface TlsState {
  mode: "files" | "acme";
  subject: string;
  names: string[];
  issuer: string;
  notBefore: string;
  notAfter: string;
  /** The certificate files (mode files). */
  files?: { cert: string; key: string };
  /** The plain-HTTP port that redirects to HTTPS (0: none). */
  redirectPort: number;
  lastLoadedAt: string;
  /** The last reload or renewal that failed (the old certificate kept serving), cleared by the next success. */
  lastError: string | null;
  acme?: AcmeState;
}

/** What `ServerTls.start` needs. */
export interface ServerTlsOptions {
  config: TlsStartup & { dataDir: string; host: string; port: number };
  logger: Logger;
  /** A reload or renewal failed (the message), or works again (null). */
  onOutcome(error: string | null): void;
  /** ACME renewal retry timing (tests shorten it). */
  acmeRetryMs?: number;
}

/**
 * HTTPS for the server: the certificate from files (re-read when they change or
 * on SIGHUP) or from ACME (renewed by itself), the plain-HTTP redirect port, and
 * the listener rotation when a new certificate is in hand.
 */
export class ServerTls {
  private pair: CertificatePair;
  private listener: RotatingListener | null = null;
  private watchers: FSWatcher[] = [];
  private debounce: ReturnType<typeof setTimeout> | null = null;
  private lastError: string | null = null;
  private lastLoadedAt = new Date();
  private readonly onHup = () => {
    this.opts.logger.info("SIGHUP: re-reading the tls certificate files");
    this.reload();
  };

  private constructor(
    private readonly opts: ServerTlsOptions,
    first: CertificatePair,
    private readonly acme: AcmeCertificates | null,
    private readonly redirect: Server<undefined> | null,
    private readonly redirectTarget: { port: number },
  ) {
    this.pair = first;
  }

  /** TLS as the startup config says, or null when it is off. Throws a clear error for a pair that cannot be served. */
  static async start(opts: ServerTlsOptions): Promise<ServerTls | null> {
    const { config, logger } = opts;
    const mode = tlsMode(config);
    if (mode.kind === "off") return null;
    const target = { port: config.port };
    let acme: AcmeCertificates | null = null;
    let tls!: ServerTls;
    if (mode.kind === "acme") {
      acme = new AcmeCertificates({
        domains: mode.domains, email: config.acmeEmail ?? null, directory: config.acmeDirectory ?? ACME_DIRECTORIES.production, caFile: config.acmeCaFile ?? null,
        dataDir: config.dataDir, logger, retryMs: opts.acmeRetryMs, pollMs: opts.acmeRetryMs,
        onCertificate: (pair) => tls.serve(pair),
        onOutcome: (error) => {
          if (tls) tls.lastError = error;
          opts.onOutcome(error);
        },
      });
    }
    const port = redirectPortOf(config);
    const redirect = port === 0 ? null : startRedirectServer({ host: config.host, port, httpsPort: () => target.port, challenge: (t) => acme?.challengeAnswer(t), logger });
    let first: CertificatePair;
    try {
      first = mode.kind === "files" ? readCertificatePair(mode.cert, mode.key) : await acme!.start();
    } catch (err) {
      acme?.stop();
      redirect?.stop(true);
      throw err;
    }
    tls = new ServerTls(opts, first, acme, redirect, target);
    if (mode.kind === "files") tls.watch(mode.cert, mode.key);
    logger.info("tls on", { mode: mode.kind, subject: first.subject, names: first.names.join(","), not_after: first.notAfter.toISOString(), redirect_port: port });
    return tls;
  }

  /** What Bun.serve's `tls` option gets. */
  tlsOptions(): TLSOptions {
    return { cert: this.pair.cert, key: this.pair.key };
  }

  /** Serves further certificates through `listener` (on `port`, the HTTPS port the redirect points at). */
  attach(listener: RotatingListener, port: number): void {
    this.listener = listener;
    this.redirectTarget.port = port;
  }

  /** Re-reads the certificate files now (mode files). A pair that fails the checks is not served; the old one stays. */
  reload(): boolean {
    const mode = tlsMode(this.opts.config);
    if (mode.kind !== "files") return false;
    let pair: CertificatePair;
    try {
      pair = readCertificatePair(mode.cert, mode.key);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.opts.logger.warn("tls certificate files not reloaded; the current certificate keeps serving", { error: this.lastError });
      this.opts.onOutcome(this.lastError);
      return false;
    }
    if (pair.cert === this.pair.cert && pair.key === this.pair.key) return true;
    this.serve(pair);
    if (this.lastError !== null) this.opts.onOutcome(null);
    this.lastError = null;
    return true;
  }

  /** ACME: renews now (used by tests and the renewal timer). */
  renewNow(): Promise<void> {
    return this.acme ? this.acme.renewNow() : Promise.resolve();
  }

  /** The current certificate and how it is kept. */
  state(): TlsState {
    const mode = tlsMode(this.opts.config);
    return {
      mode: mode.kind === "files" ? "files" : "acme",
      subject: this.pair.subject, names: this.pair.names, issuer: this.pair.issuer,
      notBefore: this.pair.notBefore.toISOString(), notAfter: this.pair.notAfter.toISOString(),
      ...(mode.kind === "files" ? { files: { cert: mode.cert, key: mode.key } } : {}),
      redirectPort: this.redirect ? redirectPortOf(this.opts.config) : 0,
      lastLoadedAt: this.lastLoadedAt.toISOString(),
      lastError: this.lastError,
      ...(this.acme ? { acme: this.acme.snapshot() } : {}),
    };
  }

  /** Stops watching, renewing and redirecting. */
  stop(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.debounce) clearTimeout(this.debounce);
    process.off("SIGHUP", this.onHup);
    this.acme?.stop();
    this.redirect?.stop(true);
  }

  private serve(pair: CertificatePair): void {
    try {
      this.listener?.rotate({ cert: pair.cert, key: pair.key });
    } catch (err) {
      this.lastError = `the new certificate could not be served: ${(err as Error).message}`;
      this.opts.logger.error("tls certificate not rotated; the current certificate keeps serving", { error: this.lastError });
      return;
    }
    this.pair = pair;
    this.lastLoadedAt = new Date();
    this.opts.logger.info("tls certificate now served", { subject: pair.subject, names: pair.names.join(","), not_after: pair.notAfter.toISOString() });
  }

  private watch(cert: string, key: string): void {
    // Watch the folders, not the files: tools replace a certificate by renaming a new file over it.
    const wanted = new Map<string, Set<string>>();
    for (const f of [cert, key]) {
      const d = dirname(f);
      if (!wanted.has(d)) wanted.set(d, new Set());
      wanted.get(d)!.add(basename(f));
    }
    for (const [dir, names] of wanted) {
      try {
        this.watchers.push(watch(dir, (_event, name) => {
          if (name && !names.has(String(name))) return;
          // A certificate and its key are two writes: wait until both have landed.
          if (this.debounce) clearTimeout(this.debounce);
          this.debounce = setTimeout(() => this.reload(), 300);
        }));
      } catch (err) {
        this.opts.logger.warn("cannot watch the tls certificate folder; SIGHUP still reloads", { dir, error: (err as Error).message });
      }
    }
    process.on("SIGHUP", this.onHup);
  }
}
