import { hostname } from "node:os";
import { resolve } from "node:path";
import { LOG_LEVELS, type LogLevel } from "../core/logger.ts";
import { UsageError } from "../core/errors.ts";
import { NATS_URL_RULE, normalizeNatsUrl } from "../core/nats-url.ts";
import { parseUdpListenerSpec, UDP_SPEC_RULE, type UdpListenerSpec } from "../core/udp-spec.ts";
import { checkTlsStartup, TLS_OPTIONS, type TlsStartup } from "../tls/startup.ts";

/** Startup configuration: what must be known before anything opens. Everything else is a runtime setting. */
export interface StartupConfig extends TlsStartup {
  dataDir: string;
  host: string;
  port: number;
  udpPort: number;
  udpHost: string;
  /** Extra UDP listeners from --udp, besides those in the settings. */
  udp: UdpListenerSpec[];
  logLevel: LogLevel;
  /** This node's name in a cluster, in the log's `node` column and in offloaded keys (default: the host name). */
  nodeId: string;
  /** NATS servers to join a cluster through (empty: this node runs alone). */
  nats: string[];
  /** From SWITCHYARD_SLACK_WEBHOOK_URL only (never a flag: a flag shows in `ps`); overrides the stored URL. */
  slackWebhookUrl: string | null;
  /** From SWITCHYARD_RELAY_SECRET only: an imported practable relay secret; overrides the stored one. */
  relaySecret?: string | null;
  /** S3 credentials for offloading the log, from the environment only (never a flag); override the stored ones. */
  s3Credentials?: S3Credentials | null;
}

/** Credentials of the S3-compatible store the log is offloaded to, and where they came from (never shown back). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  source: "SWITCHYARD_S3_*" | "AWS_*" | "settings";
}

/** S3 credentials from the environment: SWITCHYARD_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. */
export function s3CredentialsFromEnv(env: Record<string, string | undefined>): S3Credentials | null {
  if (env.SWITCHYARD_S3_ACCESS_KEY_ID && env.SWITCHYARD_S3_SECRET_ACCESS_KEY) return { accessKeyId: env.SWITCHYARD_S3_ACCESS_KEY_ID, secretAccessKey: env.SWITCHYARD_S3_SECRET_ACCESS_KEY, source: "SWITCHYARD_S3_*" };
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) return { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, source: "AWS_*" };
  return null;
}

/** Where a value came from, for `check-config`. */
export type ConfigSource = "flag" | "env" | "settings" | "default";

interface OptionSpec<K extends keyof StartupConfig> {
  key: K;
  flag: string;
  env: string;
  default: StartupConfig[K];
  help: string;
  /** Parses one value; for a `multiple` option, the list of values (flags repeated, or env comma-separated). */
  parse(text: string, name: string): StartupConfig[K];
  multiple?: boolean;
}

function port(allowZero: boolean) {
  return (text: string, name: string): number => {
    const n = Number(text);
    const min = allowZero ? 0 : 1;
    if (!/^\d+$/.test(text.trim()) || n < min || n > 65535) {
      throw new UsageError(`${name}: ${JSON.stringify(text)} is not a port; allowed: a whole number from ${min} to 65535`);
    }
    return n;
  };
}

function address(t: string, name: string): string {
  if (!/^[A-Za-z0-9.:\-\[\]]+$/.test(t)) throw new UsageError(`${name}: ${JSON.stringify(t)} is not an address; allowed: an IPv4/IPv6 address or host name`);
  return t;
}

/** What a node id looks like: 1 to 64 of A-Z a-z 0-9 _ -, beginning with a letter or digit. */
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const NODE_ID_RULE = "1 to 64 of A-Z a-z 0-9 _ -, beginning with a letter or digit";

/** The host name's first label, made into a node id. */
export function defaultNodeId(): string {
  const name = hostname().split(".")[0]!.replace(/[^A-Za-z0-9_-]/g, "-").replace(/^[-_]+/, "").slice(0, 64);
  return name === "" ? "node" : name;
}

const OPTIONS = [
  {
    key: "dataDir", flag: "data-dir", env: "SWITCHYARD_DATA_DIR", default: "./data",
    help: "folder for everything Switchyard writes (settings, logs)",
    parse: (t: string, name: string) => {
      if (t.trim() === "") throw new UsageError(`${name}: must not be empty; allowed: a folder path`);
      return t;
    },
  } satisfies OptionSpec<"dataDir">,
  {
    key: "host", flag: "host", env: "SWITCHYARD_HOST", default: "0.0.0.0",
    help: "address to listen on for HTTP and websockets", parse: address,
  } satisfies OptionSpec<"host">,
  {
    key: "port", flag: "port", env: "SWITCHYARD_PORT", default: 8888,
    help: "HTTP and websocket port (0 picks a free one)", parse: port(true),
  } satisfies OptionSpec<"port">,
  {
    key: "udpPort", flag: "udp-port", env: "SWITCHYARD_UDP_PORT", default: 8889,
    help: "UDP ingest port (0 turns the main UDP port off)", parse: port(true),
  } satisfies OptionSpec<"udpPort">,
  {
    key: "udpHost", flag: "udp-host", env: "SWITCHYARD_UDP_HOST", default: "",
    help: "address the UDP ports listen on", parse: address,
  } satisfies OptionSpec<"udpHost">,
  {
    key: "udp", flag: "udp", env: "SWITCHYARD_UDP", default: [] as UdpListenerSpec[], multiple: true,
    help: `an extra UDP listener, ${UDP_SPEC_RULE}; repeat for more (env: comma-separated)`,
    parse: (t: string, name: string) => {
      try {
        return t.split(",").filter((x) => x.trim() !== "").map(parseUdpListenerSpec);
      } catch (err) {
        throw new UsageError(`${name}: ${(err as Error).message}`);
      }
    },
  } satisfies OptionSpec<"udp">,
  {
    key: "logLevel", flag: "log-level", env: "SWITCHYARD_LOG_LEVEL", default: "info" as LogLevel,
    help: `log level: ${LOG_LEVELS.join(", ")}`,
    parse: (t: string, name: string): LogLevel => {
      if (!(LOG_LEVELS as readonly string[]).includes(t)) throw new UsageError(`${name}: ${JSON.stringify(t)} is not a log level; allowed: ${LOG_LEVELS.join(", ")}`);
      return t as LogLevel;
    },
  } satisfies OptionSpec<"logLevel">,
  {
    key: "nodeId", flag: "node-id", env: "SWITCHYARD_NODE_ID", default: defaultNodeId(),
    help: `this node's name in a cluster, ${NODE_ID_RULE}`,
    parse: (t: string, name: string) => {
      if (!NODE_ID.test(t)) throw new UsageError(`${name}: ${JSON.stringify(t)} is not a node id; allowed: ${NODE_ID_RULE}`);
      return t;
    },
  } satisfies OptionSpec<"nodeId">,
  {
    key: "nats", flag: "nats", env: "SWITCHYARD_NATS", default: [] as string[], multiple: true,
    help: "a NATS server to join a cluster through, nats://host:port; comma-separated or repeated for more",
    parse: (t: string, name: string) => t.split(",").map((x) => x.trim()).filter((x) => x !== "").map((u) => {
      const url = normalizeNatsUrl(u);
      if (url === null) throw new UsageError(`${name}: ${JSON.stringify(u)} is not a NATS URL; allowed: ${NATS_URL_RULE}`);
      return url;
    }),
  } satisfies OptionSpec<"nats">,
  ...TLS_OPTIONS,
];


/**
 * Environment variables Switchyard reads besides the startup options. Any other
 * `SWITCHYARD_*` variable is reported as unknown.
 */
export const OTHER_KNOWN_ENV = ["SWITCHYARD_SLACK_WEBHOOK_URL", "SWITCHYARD_NATIVE_DIR", "SWITCHYARD_RELAY_SECRET", "SWITCHYARD_CHILD_LAUNCHER", "SWITCHYARD_S3_ACCESS_KEY_ID", "SWITCHYARD_S3_SECRET_ACCESS_KEY"];

/** The startup options in `parseArgs` form, for commands that take them. */
export const startupParseOptions = Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: "string" as const, multiple: o.multiple ?? false }])) as Record<string, { type: "string"; multiple: boolean }>;

/** Help lines for the startup options. */
export function startupOptionsHelp(): string {
  return OPTIONS.map((o) => `  --${o.flag.padEnd(12)} ${o.help} (env ${o.env}${o.multiple ? "" : `, default ${o.default === "" ? "as --host" : o.default === null ? "none" : String(o.default)}`})`).join("\n");
}

/** The result of resolving startup config: the config, where each value came from, and warnings. */
export interface ResolvedStartupConfig {
  config: StartupConfig;
  sources: Record<keyof StartupConfig, ConfigSource>;
  warnings: string[];
}

/**
 * Resolves the startup config from flags (already parsed, as strings), then
 * `SWITCHYARD_*` environment variables, then defaults. Throws UsageError with a
 * clear message for a bad value; reports unknown `SWITCHYARD_*` variables as warnings.
 */
export function resolveStartupConfig(flags: Record<string, unknown>, env: Record<string, string | undefined>): ResolvedStartupConfig {
  const config = {} as Record<string, unknown>;
  const sources = {} as Record<string, ConfigSource>;
  for (const o of OPTIONS) {
    const flagValue = flags[o.flag];
    const envValue = env[o.env];
    if (typeof flagValue === "string" || (Array.isArray(flagValue) && flagValue.length > 0)) {
      config[o.key] = Array.isArray(flagValue) ? flagValue.flatMap((v) => o.parse(v, `--${o.flag}`) as unknown[]) : o.parse(flagValue, `--${o.flag}`);
      sources[o.key] = "flag";
    } else if (envValue !== undefined && envValue !== "") {
      config[o.key] = o.parse(envValue, o.env);
      sources[o.key] = "env";
    } else {
      config[o.key] = o.default;
      sources[o.key] = "default";
    }
  }
  config.dataDir = resolve(config.dataDir as string);
  // UDP listens where HTTP does unless told otherwise: --host 127.0.0.1 must not leave UDP open to the network.
  if (config.udpHost === "") config.udpHost = config.host;
  config.slackWebhookUrl = env.SWITCHYARD_SLACK_WEBHOOK_URL || null;
  config.relaySecret = env.SWITCHYARD_RELAY_SECRET || null;
  config.s3Credentials = s3CredentialsFromEnv(env);
  checkTlsStartup(config as unknown as StartupConfig);
  const known = new Set([...OPTIONS.map((o) => o.env), ...OTHER_KNOWN_ENV]);
  const warnings = Object.keys(env)
    .filter((k) => k.startsWith("SWITCHYARD_") && !known.has(k))
    .sort()
    .map((k) => `unknown environment variable ${k} is ignored; known: ${[...known].sort().join(", ")}`);
  return {
    config: config as unknown as StartupConfig,
    sources: sources as Record<keyof StartupConfig, ConfigSource>,
    warnings,
  };
}

/**
 * Applies the ports and NATS servers saved in the settings (http_port, udp_port,
 * nats_servers: set from the admin UI or PATCH /api/settings) where neither a
 * flag nor the environment gave one.
 */
export function withStoredPorts(resolved: ResolvedStartupConfig, stored: { http_port: number | null; udp_port: number | null; nats_servers?: string[] }): ResolvedStartupConfig {
  const config = { ...resolved.config };
  const sources = { ...resolved.sources };
  if (sources.port === "default" && stored.http_port !== null) {
    config.port = stored.http_port;
    sources.port = "settings";
  }
  if (sources.udpPort === "default" && stored.udp_port !== null) {
    config.udpPort = stored.udp_port;
    sources.udpPort = "settings";
  }
  const nats = (stored.nats_servers ?? []).map(normalizeNatsUrl).filter((u): u is string => u !== null);
  if (sources.nats === "default" && nats.length > 0) {
    config.nats = nats;
    sources.nats = "settings";
  }
  return { ...resolved, config, sources };
}
