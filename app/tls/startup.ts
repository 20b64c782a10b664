import { UsageError } from "../core/errors.ts";

/** Let's Encrypt's directories; `--acme-directory staging` or `production` name them. */
export const ACME_DIRECTORIES = {
  production: "https://acme-v02.api.letsencrypt.org/directory",
  staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

/** The TLS part of the startup config (flags and env; TLS is chosen before anything listens). */
export interface TlsStartup {
  /** PEM certificate chain (leaf first) and its key, re-read when they change or on SIGHUP. */
  tlsCert?: string | null;
  tlsKey?: string | null;
  /** Names to get a certificate for from an ACME CA (empty: no ACME). */
  acmeDomains?: string[];
  acmeEmail?: string | null;
  /** The ACME directory URL (default Let's Encrypt production). */
  acmeDirectory?: string;
  /** A PEM CA bundle that the ACME directory's own HTTPS certificate is checked against (a lab's CA). */
  acmeCaFile?: string | null;
  /** Plain-HTTP port that redirects to HTTPS and answers ACME HTTP-01 challenges; null: 80 with ACME, none with files; 0: none. */
  redirectPort?: number | null;
}

const path = (t: string, name: string) => {
  if (t.trim() === "") throw new UsageError(`${name}: must not be empty; allowed: a file path`);
  return t;
};

const DOMAIN = /^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The TLS startup options, in the form of app/config/startup.ts's option list. */
export const TLS_OPTIONS = [
  {
    key: "tlsCert" as const, flag: "tls-cert", env: "SWITCHYARD_TLS_CERT", default: null as string | null,
    help: "PEM certificate chain for HTTPS and wss:// on --port (with --tls-key)", parse: path,
  },
  {
    key: "tlsKey" as const, flag: "tls-key", env: "SWITCHYARD_TLS_KEY", default: null as string | null,
    help: "PEM private key of --tls-cert", parse: path,
  },
  {
    key: "acmeDomains" as const, flag: "acme-domain", env: "SWITCHYARD_ACME_DOMAIN", default: [] as string[], multiple: true,
    help: "get a certificate for these names from an ACME CA (NAME[,NAME]; repeat or comma-separate)",
    parse: (t: string, name: string): string[] => {
      const names = t.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
      for (const n of names) {
        if (!DOMAIN.test(n)) throw new UsageError(`${name}: ${JSON.stringify(n)} is not a domain name; allowed: DNS names like relay.example.org, comma-separated`);
        if (n.startsWith("*.")) throw new UsageError(`${name}: ${JSON.stringify(n)}: wildcards need DNS-01, which Switchyard does not do; allowed: plain DNS names (HTTP-01)`);
      }
      if (names.length === 0) throw new UsageError(`${name}: must name at least one domain`);
      return names;
    },
  },
  {
    key: "acmeEmail" as const, flag: "acme-email", env: "SWITCHYARD_ACME_EMAIL", default: null as string | null,
    help: "contact address for the ACME account (expiry warnings)",
    parse: (t: string, name: string) => {
      if (!/^[^\s@,]+@[^\s@,]+\.[^\s@,]+$/.test(t)) throw new UsageError(`${name}: ${JSON.stringify(t)} is not an email address; allowed: one address like ops@example.org`);
      return t;
    },
  },
  {
    key: "acmeDirectory" as const, flag: "acme-directory", env: "SWITCHYARD_ACME_DIRECTORY", default: ACME_DIRECTORIES.production as string,
    help: "ACME directory URL, or production / staging (Let's Encrypt's)",
    parse: (t: string, name: string): string => {
      if (t === "production" || t === "staging") return ACME_DIRECTORIES[t];
      if (!/^https:\/\/[^\s/]+(\/\S*)?$/.test(t)) throw new UsageError(`${name}: ${JSON.stringify(t)} is not an ACME directory; allowed: an https:// URL, production or staging`);
      return t;
    },
  },
  {
    key: "acmeCaFile" as const, flag: "acme-ca-file", env: "SWITCHYARD_ACME_CA_FILE", default: null as string | null,
    help: "PEM CA that the ACME directory's HTTPS certificate is checked against (a lab's own CA)", parse: path,
  },
  {
    key: "redirectPort" as const, flag: "redirect-port", env: "SWITCHYARD_REDIRECT_PORT", default: null as number | null,
    help: "plain-HTTP port redirecting to HTTPS and answering ACME challenges (default 80 with ACME, none with --tls-cert; 0: none)",
    parse: (t: string, name: string): number => {
      const n = Number(t);
      if (!/^\d+$/.test(t.trim()) || n > 65535) throw new UsageError(`${name}: ${JSON.stringify(t)} is not a port; allowed: a whole number from 0 (none) to 65535`);
      return n;
    },
  },
];

/** How this server does TLS, from the startup config. */
export type TlsMode = { kind: "off" } | { kind: "files"; cert: string; key: string } | { kind: "acme"; domains: string[] };

/** The TLS mode of a checked startup config. */
export function tlsMode(c: TlsStartup): TlsMode {
  if (c.acmeDomains && c.acmeDomains.length > 0) return { kind: "acme", domains: c.acmeDomains };
  if (c.tlsCert && c.tlsKey) return { kind: "files", cert: c.tlsCert, key: c.tlsKey };
  return { kind: "off" };
}

/** The redirect/challenge port: the configured one, else 80 with ACME, else none (0). */
export function redirectPortOf(c: TlsStartup): number {
  if (c.redirectPort !== null && c.redirectPort !== undefined) return c.redirectPort;
  return tlsMode(c).kind === "acme" ? 80 : 0;
}

/** Refuses TLS options that do not go together, saying what does. */
export function checkTlsStartup(c: TlsStartup & { port: number }): void {
  if ((c.tlsCert == null) !== (c.tlsKey == null)) throw new UsageError("--tls-cert and --tls-key go together; give both (the certificate chain and its private key)");
  const acme = (c.acmeDomains?.length ?? 0) > 0;
  if (acme && c.tlsCert) throw new UsageError("--acme-domain and --tls-cert exclude each other; allowed: certificate files, or ACME");
  if (!acme && (c.acmeEmail || c.acmeCaFile)) throw new UsageError("--acme-email and --acme-ca-file need --acme-domain (the names to get a certificate for)");
  if (tlsMode(c).kind === "off" && c.redirectPort) throw new UsageError("--redirect-port needs TLS (--tls-cert/--tls-key or --acme-domain): it redirects to HTTPS");
  const redirect = redirectPortOf(c);
  if (redirect !== 0 && redirect === c.port) throw new UsageError(`--redirect-port ${redirect} is also the HTTPS port (--port); allowed: another port, or 0 for none`);
}
