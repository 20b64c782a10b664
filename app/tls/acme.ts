import * as acme from "acme-client";
import { generateKeyPairSync } from "node:crypto";
import { Agent } from "node:https";
import { rootCertificates } from "node:tls";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../core/logger.ts";
import { checkCertificatePair, type CertificatePair } from "./certificate.ts";

/** Where ACME state lives, under the data dir (folder 0700, files 0600). */
export const ACME_DIR = "tls";

/** What `AcmeCertificates` needs. */
export interface AcmeOptions {
  domains: string[];
  email: string | null;
  directory: string;
  /** PEM CA bundle for the directory's HTTPS (a lab's own CA); null: the system's roots. */
  caFile: string | null;
  dataDir: string;
  logger: Logger;
  /** A new certificate is in hand: serve it. */
  onCertificate(pair: CertificatePair): void;
  /** An order or renewal failed (`error`), or works again (null). */
  onOutcome(error: string | null): void;
  /** First retry after a failed renewal, doubling up to `retryMaxMs` (tests shorten both). */
  retryMs?: number;
  retryMaxMs?: number;
  /** First wait between polls of an order's status (acme-client's back-off: default 5 s doubling to 30 s; tests shorten it). */
  pollMs?: number;
  now?: () => number;
}

/** What the Settings page and dashboard show about ACME. */
export interface AcmeState {
  directory: string;
  domains: string[];
  lastError: string | null;
  lastErrorAt: string | null;
  lastIssuedAt: string | null;
  nextRenewalAt: string | null;
  orders: number;
}

interface StoredMeta {
  directory: string;
  domains: string[];
}

/** Longest single timer (setTimeout's limit is about 24.8 days); a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Certificates from an ACME CA (Let's Encrypt, or a lab's own) by HTTP-01, with
 * acme-client doing the protocol. The account key and the certificate are kept
 * in DATA_DIR/tls, so a restart serves the stored certificate without a new
 * order. Renewal starts when a third of the lifetime is left; a failure keeps
 * the current certificate serving, is reported (alert, dashboard), and is
 * retried with doubling back-off.
 */
export class AcmeCertificates {
  private readonly challenges = new Map<string, string>();
  private readonly dir: string;
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = false;
  private current: CertificatePair | null = null;
  private renewing: Promise<void> | null = null;
  private readonly state: AcmeState;
  private directoryCa: string | null = null;

  constructor(private readonly opts: AcmeOptions) {
    this.dir = join(opts.dataDir, ACME_DIR);
    this.now = opts.now ?? Date.now;
    this.state = { directory: opts.directory, domains: opts.domains, lastError: null, lastErrorAt: null, lastIssuedAt: null, nextRenewalAt: null, orders: 0 };
    if (opts.caFile) {
      let ca: string;
      try {
        ca = readFileSync(opts.caFile, "utf8");
      } catch (err) {
        throw new Error(`--acme-ca-file ${opts.caFile}: cannot be read: ${(err as Error).message}`);
      }
      this.directoryCa = ca;
      // acme-client talks through its own axios instance; its agent decides whom the directory must be signed by.
      acme.axios.defaults.httpsAgent = new Agent({ ca });
    } else {
      acme.axios.defaults.httpsAgent = undefined;
    }
  }

  /** The key authorization for an HTTP-01 token, while its challenge is open. */
  challengeAnswer(token: string): string | undefined {
    return this.challenges.get(token);
  }

  /** A snapshot for the Settings page and dashboard. */
  snapshot(): AcmeState {
    return { ...this.state };
  }

  /**
   * The certificate to start with: the stored one when it is for the same
   * directory and names and still valid (renewed later if due), else a new order.
   * Throws when there is no stored certificate and the order fails.
   */
  async start(): Promise<CertificatePair> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const stored = this.stored();
    if (stored) {
      this.opts.logger.info("tls certificate from the data dir", { domains: this.opts.domains.join(","), not_after: stored.notAfter.toISOString() });
      this.current = stored;
      this.schedule(this.renewalTime(stored));
      return stored;
    }
    const pair = await this.order();
    this.current = pair;
    this.schedule(this.renewalTime(pair));
    return pair;
  }

  /** Renews now (the timer does this by itself; the API and tests may ask). */
  renewNow(): Promise<void> {
    return (this.renewing ??= this.renew().finally(() => (this.renewing = null)));
  }

  /** Stops renewing. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** When a third of `pair`'s lifetime is left. */
  private renewalTime(pair: CertificatePair): number {
    const start = pair.notBefore.getTime();
    const end = pair.notAfter.getTime();
    return Math.floor(start + ((end - start) * 2) / 3);
  }

  private schedule(at: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.state.nextRenewalAt = new Date(at).toISOString();
    const wait = Math.max(0, at - this.now());
    this.timer = setTimeout(() => {
      if (at > this.now()) return this.schedule(at);
      void this.renewNow();
    }, Math.min(wait, MAX_TIMER_MS));
    this.timer.unref?.();
  }

  private async renew(): Promise<void> {
    try {
      const pair = await this.order();
      this.current = pair;
      this.opts.onCertificate(pair);
      this.schedule(this.renewalTime(pair));
    } catch (err) {
      const retry = Math.min(this.opts.retryMaxMs ?? 6 * 3600_000, (this.opts.retryMs ?? 60_000) * 2 ** Math.min(this.failures - 1, 20));
      this.opts.logger.warn("tls certificate renewal failed; the current certificate keeps serving", {
        error: (err as Error).message, not_after: this.current?.notAfter.toISOString(), retry_in_seconds: Math.round(retry / 1000),
      });
      this.schedule(this.now() + retry);
    }
  }

  /** Places one order for the configured names and stores the result. */
  private async order(): Promise<CertificatePair> {
    this.state.orders++;
    const { domains, directory, logger } = this.opts;
    logger.info("tls certificate order", { domains: domains.join(","), directory });
    try {
      await this.checkDirectory();
      // A known account is reused by its URL: registering again would send an "update" some CAs refuse.
      const poll = this.opts.pollMs;
      const client = new acme.Client({
        directoryUrl: directory, accountKey: this.accountKey(), accountUrl: this.accountUrl(),
        ...(poll ? { backoffMin: poll, backoffMax: poll * 4, backoffAttempts: 30 } : {}),
      });
      const key = await acme.crypto.createPrivateEcdsaKey("P-256");
      const [, csr] = await acme.crypto.createCsr({ commonName: domains[0], altNames: domains }, key);
      const cert = await client.auto({
        csr,
        email: this.opts.email ?? undefined,
        termsOfServiceAgreed: true,
        challengePriority: ["http-01"],
        // The CA checks the challenge itself; a self-check would need this box to reach itself by its public name.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          if (challenge.type !== "http-01") throw new Error(`challenge ${challenge.type} is not supported; Switchyard answers http-01 on the redirect port`);
          this.challenges.set(challenge.token, keyAuthorization);
        },
        challengeRemoveFn: async (_authz, challenge) => {
          this.challenges.delete(challenge.token);
        },
      });
      const pair = checkCertificatePair(cert, key.toString(), new Date(this.now()), { cert: "the CA's certificate", key: "the new key" });
      writePrivate(join(this.dir, "account.json"), JSON.stringify({ directory, url: client.getAccountUrl() }) + "\n");
      this.save(pair);
      this.failures = 0;
      this.state.lastIssuedAt = new Date(this.now()).toISOString();
      this.state.lastError = null;
      this.opts.onOutcome(null);
      logger.info("tls certificate issued", { domains: domains.join(","), issuer: pair.issuer, not_after: pair.notAfter.toISOString() });
      return pair;
    } catch (err) {
      this.failures++;
      const message = `ACME order for ${domains.join(", ")} at ${directory} failed: ${describeAcmeError(err)}`;
      this.state.lastError = message;
      this.state.lastErrorAt = new Date(this.now()).toISOString();
      this.opts.onOutcome(message);
      throw new Error(message, { cause: err });
    }
  }

  /** Fetches the directory first, so an unreachable or untrusted CA gets a clear error at once rather than after acme-client's retries. */
  private async checkDirectory(): Promise<void> {
    const { directory } = this.opts;
    let res: Response;
    try {
      res = await fetch(directory, { signal: AbortSignal.timeout(15_000), ...(this.directoryCa ? { tls: { ca: [...rootCertificates, this.directoryCa] } } : {}) });
    } catch (err) {
      throw new Error(describeAcmeError(err));
    }
    if (!res.ok) throw new Error(`the directory answered ${res.status}; check --acme-directory`);
    await res.arrayBuffer();
  }

  private accountUrl(): string | undefined {
    try {
      const a = JSON.parse(readFileSync(join(this.dir, "account.json"), "utf8")) as { directory?: string; url?: string };
      return a.directory === this.opts.directory && typeof a.url === "string" ? a.url : undefined;
    } catch {
      return undefined;
    }
  }

  private accountKey(): string {
    const file = join(this.dir, "account.key");
    if (existsSync(file)) return readFileSync(file, "utf8");
    const pem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    writePrivate(file, pem);
    return pem;
  }

  private stored(): CertificatePair | null {
    const meta = join(this.dir, "certificate.json");
    if (!existsSync(meta)) return null;
    try {
      const m = JSON.parse(readFileSync(meta, "utf8")) as StoredMeta;
      const sameNames = m.domains.length === this.opts.domains.length && this.opts.domains.every((d) => m.domains.includes(d));
      if (m.directory !== this.opts.directory || !sameNames) return null;
      return checkCertificatePair(readFileSync(join(this.dir, "certificate.pem"), "utf8"), readFileSync(join(this.dir, "certificate.key"), "utf8"), new Date(this.now()));
    } catch (err) {
      this.opts.logger.warn("stored tls certificate not used; ordering a new one", { error: (err as Error).message });
      return null;
    }
  }

  private save(pair: CertificatePair): void {
    writePrivate(join(this.dir, "certificate.key"), pair.key);
    writePrivate(join(this.dir, "certificate.pem"), pair.cert);
    writePrivate(join(this.dir, "certificate.json"), JSON.stringify({ directory: this.opts.directory, domains: this.opts.domains } satisfies StoredMeta) + "\n");
  }
}

/** Writes a file readable by its owner only, replacing it in one step. */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/** The CA's own words for a failed order (its problem document), else the error's message. */
export function describeAcmeError(err: unknown): string {
  const e = err as { message?: string; code?: string; response?: { status?: number; data?: { detail?: string; type?: string } } };
  const detail = e.response?.data?.detail;
  if (detail) return `${detail}${e.response?.data?.type ? ` (${e.response.data.type})` : ""}`;
  if (e.code === "SELF_SIGNED_CERT_IN_CHAIN" || e.code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" || e.code === "DEPTH_ZERO_SELF_SIGNED_CERT" || e.code === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY") {
    return `the directory's HTTPS certificate is not trusted (${e.code}); for a lab's own CA, give its certificate with --acme-ca-file`;
  }
  return e.message ?? String(err);
}
