import { InvalidInput } from "../core/errors.ts";
import { streamPatternProblem } from "../core/stream-pattern.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { addressListProblem } from "../core/cidr.ts";
import { NATS_URL_RULE, normalizeNatsUrl } from "../core/nats-url.ts";
import { readCaFile } from "../tls/outbound.ts";
import { UDP_FORMATS, udpListenerProblem, type UdpFormat, type UdpListenerSpec } from "../core/udp-spec.ts";

/** Who may use streams without a token. */
export const ACCESS_POLICIES = ["open", "loopback-open", "token"] as const;
export type AccessPolicy = (typeof ACCESS_POLICIES)[number];

/** What happens to a subscriber whose unsent data passes the backpressure limit. */
export const BACKPRESSURE_POLICIES = ["drop", "disconnect"] as const;
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

/** Runtime settings: one validated record, stored in the settings store, applied live unless noted. */
export interface Settings {
  access: AccessPolicy;
  practable_loopback_api: boolean;
  trusted_proxies: string[];
  http_port: number | null;
  /** NATS servers to join a cluster through from the next start (docs/CLUSTER.md). */
  nats_servers: string[];
  udp_port: number | null;
  backpressure_policy: BackpressurePolicy;
  backpressure_limit_bytes: number;
  max_message_bytes: number;
  max_connections: number;
  keepalive_seconds: number;
  stream_linger_seconds: number;
  publish_dedup_seconds: number;
  public_url: string;
  cors_origins: string[];
  udp_format: UdpFormat;
  udp_stream: string;
  udp_stream_field: string;
  udp_allow: string[];
  udp_allow_sources: string[];
  udp_max_datagram_bytes: number;
  udp_listeners: UdpListenerSpec[];
  udp_receive_buffer_bytes: number;
  recent_messages_per_stream: number;
  recent_bytes_per_stream: number;
  recent_total_bytes: number;
  relay_buffer_bytes: number;
  relay_silence_seconds: number;
  relay_record_max_bytes: number;
  relay_catchup_messages_per_second: number;
  relay_catchup_bytes_per_second: number;
  alert_destination_down_seconds: number;
  alert_silent_streams: { pattern: string; seconds: number }[];
  alert_udp_reject_percent: number;
  alert_backpressure: boolean;
  alert_disk_free_percent: number;
  alert_lifecycle: boolean;
  alert_log_compaction: boolean;
  alert_cooldown_seconds: number;
  log_exclude: string[];
  log_deliver_unlogged: boolean;
  log_fsync_ms: number;
  log_segment_bytes: number;
  log_segment_seconds: number;
  log_retention_days: number;
  log_retention_bytes: number;
  log_compact_seconds: number;
  query_threads: number;
  query_memory_mb: number;
  query_timeout_seconds: number;
  hsts_seconds: number;
  tls_ca_file: string;
  query_processes: number;
  query_concurrency: number;
  query_queue: number;
  query_per_client: number;
  query_result_mb: number;
  query_cache_mb: number;
  query_rss_mb: number;
  query_idle_seconds: number;
  query_yield_ms: number;
  log_compact_memory_mb: number;
  offload_enabled: boolean;
  offload_s3_url: string;
  offload_bucket: string;
  offload_prefix: string;
  offload_region: string;
  offload_cache_mb: number;
  alert_offload_seconds: number;
}

/** S3's bucket naming rule (as AWS gives it), which every S3-compatible store accepts. */
export const BUCKET_RULE = "3 to 63 of a-z 0-9 . -, beginning and ending with a letter or digit, no \"..\", not an IP address";

/** Why `v` is not a bucket name (null: it is one, or it is empty). */
export function bucketProblem(v: unknown): string | null {
  if (v === "") return null;
  if (typeof v !== "string" || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) || v.includes("..") || /^\d+\.\d+\.\d+\.\d+$/.test(v)) return `allowed: empty, or a bucket name: ${BUCKET_RULE}`;
  return null;
}

/** Why `v` is not a key prefix (null: it is one). */
export function prefixProblem(v: unknown): string | null {
  const rule = "allowed: empty, or up to 200 characters of folders made of A-Z a-z 0-9 . _ - separated by /, with no empty, . or .. folder and no leading or trailing /";
  if (typeof v !== "string" || v.length > 200) return rule;
  if (v === "") return null;
  return v.split("/").every((seg) => /^[A-Za-z0-9._-]+$/.test(seg) && seg !== "." && seg !== "..") ? null : rule;
}

/** Why `v` is not an S3 endpoint URL (null: it is one, or empty). */
export function s3UrlProblem(v: unknown): string | null {
  const rule = "allowed: empty (AWS S3 in offload_region), or an http:// or https:// URL of an S3-compatible endpoint with no user, password, path, query or fragment (e.g. https://s3.example.org:9000), at most 200 characters";
  if (v === "") return null;
  if (typeof v !== "string" || v.length > 200) return rule;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return rule;
  }
  if (!["http:", "https:"].includes(url.protocol) || url.hostname === "" || url.username || url.password || (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash || /\s/.test(v)) return rule;
  return null;
}

interface FieldSpec {
  description: string;
  /** True when a change takes effect only after a restart. */
  restart?: boolean;
  check(value: unknown): string | null;
}

const oneOf = (allowed: readonly string[]) => (v: unknown) =>
  typeof v === "string" && allowed.includes(v) ? null : `allowed: ${allowed.join(", ")}`;
const int = (min: number, max: number) => (v: unknown) =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? null : `allowed: a whole number from ${min} to ${max}`;

/** Defaults for a new box. */
export const DEFAULT_SETTINGS: Settings = {
  access: "loopback-open",
  practable_loopback_api: true,
  trusted_proxies: [],
  http_port: null,
  nats_servers: [],
  udp_port: null,
  backpressure_policy: "drop",
  backpressure_limit_bytes: 1024 * 1024,
  max_message_bytes: 1024 * 1024,
  max_connections: 10_000,
  keepalive_seconds: 60,
  stream_linger_seconds: 30,
  publish_dedup_seconds: 120,
  public_url: "",
  cors_origins: [],
  udp_format: "json",
  udp_stream: "",
  udp_stream_field: "stream",
  udp_allow: [],
  udp_allow_sources: [],
  udp_max_datagram_bytes: 65536,
  udp_listeners: [],
  udp_receive_buffer_bytes: 4 * 1024 * 1024,
  recent_messages_per_stream: 100,
  recent_bytes_per_stream: 1024 * 1024,
  recent_total_bytes: 64 * 1024 * 1024,
  relay_buffer_bytes: 4 * 1024 * 1024,
  relay_silence_seconds: 60,
  relay_record_max_bytes: 64 * 1024 * 1024,
  relay_catchup_messages_per_second: 5000,
  relay_catchup_bytes_per_second: 1024 * 1024,
  alert_destination_down_seconds: 60,
  alert_silent_streams: [],
  alert_udp_reject_percent: 10,
  alert_backpressure: true,
  alert_disk_free_percent: 10,
  alert_lifecycle: true,
  alert_log_compaction: true,
  alert_cooldown_seconds: 300,
  log_exclude: [],
  log_deliver_unlogged: false,
  log_fsync_ms: 200,
  log_segment_bytes: 64 * 1024 * 1024,
  log_segment_seconds: 300,
  log_retention_days: 30,
  log_retention_bytes: 8 * 1024 ** 3,
  log_compact_seconds: 60,
  query_threads: 1,
  query_memory_mb: 128,
  query_timeout_seconds: 30,
  hsts_seconds: 0,
  tls_ca_file: "",
  query_processes: 1,
  query_concurrency: 2,
  query_queue: 16,
  query_per_client: 4,
  query_result_mb: 32,
  query_cache_mb: 8,
  query_rss_mb: 384,
  query_idle_seconds: 300,
  query_yield_ms: 250,
  log_compact_memory_mb: 128,
  offload_enabled: false,
  offload_s3_url: "",
  offload_bucket: "",
  offload_prefix: "switchyard",
  offload_region: "us-east-1",
  offload_cache_mb: 1024,
  alert_offload_seconds: 900,
};

/** What each setting means and allows. */
export const SETTING_FIELDS: Record<keyof Settings, FieldSpec> = {
  access: { description: "open: no tokens; loopback-open: clients on 127.0.0.0/8 and ::1 need no token; token: every client needs one", check: oneOf(ACCESS_POLICIES) },
  practable_loopback_api: {
    description: "clients on the box itself (127.0.0.0/8, ::1, not through a proxy) may use practable's local API without credentials (POST/PUT/GET/DELETE /api/destinations and the /api/streams feed rules), as practable's boot scripts do with curl localhost; never settings, queries, tokens or Slack. false: those routes need an admin session or an admin token too",
    check: (v) => (typeof v === "boolean" ? null : "allowed: true or false"),
  },
  trusted_proxies: {
    description: "addresses of the reverse proxies in front of this box (IPs or CIDR ranges); only from these peers are X-Forwarded-For, X-Real-IP and Forwarded believed (sign-in limits, logs). A request with a forwarding header is never local, from these peers or any other; make your proxy send one",
    check: addressListProblem,
  },
  http_port: {
    description: "HTTP and websocket port from the next start, unless --port or SWITCHYARD_PORT is given (empty: 8888)", restart: true,
    check: (v) => (v === null || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535) ? null : "allowed: a port from 1 to 65535, or null (empty) for the default"),
  },
  nats_servers: {
    description: "NATS servers to join a cluster through from the next start, unless --nats or SWITCHYARD_NATS is given (empty: standalone); see docs/CLUSTER.md", restart: true,
    check: (v) => {
      if (!Array.isArray(v) || v.length > 32) return `allowed: a list of at most 32 NATS servers (${NATS_URL_RULE})`;
      const bad = v.find((u) => typeof u !== "string" || normalizeNatsUrl(u) === null);
      return bad === undefined ? null : `${JSON.stringify(bad)} is not a NATS URL; allowed: ${NATS_URL_RULE}`;
    },
  },
  udp_port: {
    description: "UDP ingest port from the next start, unless --udp-port or SWITCHYARD_UDP_PORT is given (0: off; empty: 8889)", restart: true,
    check: (v) => (v === null || (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535) ? null : "allowed: a port from 0 (off) to 65535, or null (empty) for the default"),
  },
  backpressure_policy: { description: "drop: a slow subscriber loses messages (counted); disconnect: it is closed with code 1013", check: oneOf(BACKPRESSURE_POLICIES) },
  backpressure_limit_bytes: { description: "bytes a subscriber may have waiting to be sent before the policy applies", restart: true, check: int(64 * 1024, 1024 ** 3) },
  max_message_bytes: { description: "largest message accepted, in bytes (websocket close 1009, HTTP 413 above it)", restart: true, check: int(1, 64 * 1024 * 1024) },
  max_connections: { description: "most websocket connections and stream event streams at once; more websockets are closed with code 1013, more event streams get 503", check: int(1, 1_000_000) },
  keepalive_seconds: { description: "a connection that sends nothing (not even a pong) for this long is closed; pings go out before that", restart: true, check: int(8, 960) },
  stream_linger_seconds: { description: "how long a stream with no clients and no messages stays listed", check: int(0, 86_400) },
  publish_dedup_seconds: { description: "a message a websocket publisher (?ack=id) sends again with the same id within this many seconds is acknowledged with its first seq, not stored twice (0: off; at most 100,000 ids are kept)", check: int(0, 86_400) },
  public_url: {
    description: "the URL this box is reached at (e.g. https://relay.example.org); tokens with an audience must name it",
    check: (v) => (typeof v === "string" && (v === "" || /^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(v)) ? null : "allowed: empty, or an http:// or https:// URL"),
  },
  cors_origins: {
    description: "web page origins (e.g. https://lab.example.org, or * for any) whose browsers may call POST /session/{topic} from another origin (CORS); empty: none",
    check: (v) => (Array.isArray(v) && v.every((o) => typeof o === "string" && (o === "*" || /^https?:\/\/[^\s/?#]+$/.test(o))) ? null : "allowed: a list of origins such as https://lab.example.org (scheme and host, optional port, no path), or *"),
  },
  udp_format: { description: "how the main UDP port reads datagrams: json (stream field), line (stream<TAB>payload), raw (binary onto udp_stream), text (text onto udp_stream)", check: oneOf(UDP_FORMATS) },
  udp_stream: {
    description: "the stream the main UDP port feeds when udp_format is raw or text (for json, every datagram goes there when set)",
    check: (v) => (v === "" ? null : typeof v === "string" ? streamNameProblem(v) : "allowed: a stream name or empty"),
  },
  udp_stream_field: { description: "the JSON field that names a datagram's stream (format json)", check: (v) => (typeof v === "string" && /^[A-Za-z0-9_$-]{1,64}$/.test(v) ? null : "allowed: a field name of 1 to 64 characters [A-Za-z0-9_$-]") },
  udp_allow: {
    description: "if not empty, UDP datagrams may only feed streams matching one of these patterns (* matches any run of characters); others are rejected as not_allowed",
    check: (v) => (Array.isArray(v) ? v.map(streamPatternProblem).find((p) => p !== null) ?? null : "allowed: a list of patterns, e.g. [\"spin*\"]"),
  },
  udp_allow_sources: {
    description: "UDP senders allowed in (IPs or CIDR ranges). Empty: with access token only senders on the box (127.0.0.0/8, ::1); with open or loopback-open any sender. Not empty: only these, whatever the policy (list 127.0.0.1 too if programs on the box send). Others are rejected as source_not_allowed",
    check: addressListProblem,
  },
  udp_max_datagram_bytes: { description: "largest datagram accepted; larger ones are rejected as too_large", check: int(1, 65536) },
  udp_listeners: {
    description: "extra UDP listeners: [{port, format, stream?}], e.g. [{\"port\":9001,\"format\":\"raw\",\"stream\":\"spin30\"}]",
    check: (v) => {
      if (!Array.isArray(v)) return "allowed: a list of {port, format, stream?}";
      const ports = new Set<number>();
      for (const l of v) {
        if (typeof l !== "object" || l === null) return "allowed: a list of {port, format, stream?}";
        const p = udpListenerProblem(l as UdpListenerSpec);
        if (p) return p;
        if (ports.has((l as UdpListenerSpec).port)) return `port ${(l as UdpListenerSpec).port} is listed twice`;
        ports.add((l as UdpListenerSpec).port);
      }
      return null;
    },
  },
  udp_receive_buffer_bytes: {
    description: "kernel receive buffer asked for each UDP socket (0: the OS default); above net.core.rmem_max only when running with CAP_NET_ADMIN. Applies to listeners opened after the change",
    check: int(0, 1024 ** 3),
  },
  recent_messages_per_stream: { description: "messages kept in memory per stream for GET /api/streams/{name}/messages", check: int(0, 100_000) },
  recent_bytes_per_stream: { description: "payload bytes kept in memory per stream for recent messages", check: int(0, 256 * 1024 * 1024) },
  relay_buffer_bytes: { description: "bytes a destination may have waiting to go out; past that its messages are dropped (counted), so a stalled remote never stalls the hub", check: int(64 * 1024, 1024 ** 3) },
  relay_silence_seconds: { description: "a destination pings its remote and closes the connection (and counts it down) when it hears nothing for this long; applies to connections opened after the change", check: int(1, 3600) },
  relay_record_max_bytes: { description: "a destination's record file is rotated (to .1, .2, .3) when it reaches this size", check: int(1024, 64 * 1024 ** 3) },
  relay_catchup_messages_per_second: { description: "most backlog messages per second all store-and-forward destinations (\"resume\": true) send together while catching up after an outage, so live traffic keeps the rest of a thin uplink (0: no limit)", check: int(0, 10_000_000) },
  relay_catchup_bytes_per_second: { description: "most backlog bytes per second (as sent, with framing) all store-and-forward destinations send together while catching up (0: no limit)", check: int(0, 1024 ** 3) },
  alert_destination_down_seconds: { description: "alert when a destination has been disconnected this long, and again when it recovers (0: off)", check: int(0, 86_400) },
  alert_silent_streams: {
    description: "alert when a stream matching a pattern has said nothing for its seconds, e.g. [{\"pattern\":\"spin*\",\"seconds\":30}]",
    check: (v) => {
      if (!Array.isArray(v)) return "allowed: a list of {pattern, seconds}";
      for (const r of v as { pattern?: unknown; seconds?: unknown }[]) {
        if (typeof r !== "object" || r === null) return "allowed: a list of {pattern, seconds}";
        const p = streamPatternProblem(r.pattern);
        if (p) return p;
        if (typeof r.seconds !== "number" || !Number.isInteger(r.seconds) || r.seconds < 1 || r.seconds > 86_400) return "seconds: allowed: a whole number from 1 to 86400";
      }
      return null;
    },
  },
  alert_udp_reject_percent: { description: "alert when more than this percent of UDP records were rejected over the last minute (0: off)", check: int(0, 100) },
  alert_backpressure: { description: "alert when subscribers lose messages or are disconnected for being too slow", check: (v) => (typeof v === "boolean" ? null : "allowed: true or false") },
  alert_disk_free_percent: { description: "alert when the data dir's file system has less than this percent free (0: off)", check: int(0, 99) },
  alert_log_compaction: { description: "alert when the log cannot write (disk full, I/O error), finds damaged segments at start, or fails to compact to Parquet, and when it works again", check: (v) => (typeof v === "boolean" ? null : "allowed: true or false") },
  alert_lifecycle: { description: "tell Slack when Switchyard starts and stops", check: (v) => (typeof v === "boolean" ? null : "allowed: true or false") },
  alert_cooldown_seconds: { description: "at most one message per alert rule and subject in this time; repeats are grouped", check: int(0, 86_400) },
  log_exclude: {
    description: "streams matching these patterns are not written to the durable log (* matches any run of characters)",
    check: (v) => (Array.isArray(v) ? v.map(streamPatternProblem).find((p) => p !== null) ?? null : "allowed: a list of patterns, e.g. [\"debug/*\"]"),
  },
  log_deliver_unlogged: {
    description: "false (default): while the log cannot write (disk full, I/O error), publishes to logged streams are refused (HTTP 503, websocket close 1013, UDP counted as rejected), so nothing is seen that the log does not have; true: such messages are still delivered live, not stored, and counted",
    check: (v) => (typeof v === "boolean" ? null : "allowed: true or false"),
  },
  log_fsync_ms: { description: "the spool is fsynced at least this often, bounding what a power cut can take (HTTP publishes wait for their own fsync)", check: int(10, 60_000) },
  log_segment_bytes: { description: "a spool segment is sealed at this size", restart: true, check: int(1024 * 1024, 1024 ** 3) },
  log_segment_seconds: { description: "a spool segment is sealed at this age", restart: true, check: int(1, 86_400) },
  log_retention_days: { description: "sealed log data older than this is removed, oldest first (0: keep by age forever)", check: int(0, 36_500) },
  log_retention_bytes: { description: "sealed log data beyond this total size is removed, oldest first (0: no size limit)", check: int(0, Number.MAX_SAFE_INTEGER) },
  log_compact_seconds: { description: "how often sealed spool segments are compacted to Parquet under DATA_DIR/logs, and at once when 2 sealed segments wait (0: never)", check: int(0, 86_400) },
  query_threads: { description: "threads DuckDB may use for one query (SQL, history, Grafana)", check: int(1, 64) },
  query_memory_mb: { description: "memory DuckDB may use for one query before it spills to DATA_DIR/tmp/duckdb, in MiB (128 suits a 512 MB machine)", check: int(32, 65_536) },
  query_timeout_seconds: { description: "a query over HTTP (SQL, history, Grafana) is stopped after this long", check: int(1, 3600) },
  hsts_seconds: {
    description: "with TLS on, HTTPS answers carry Strict-Transport-Security: max-age of this many seconds, so browsers use only HTTPS for the box (0: off; 31536000 is a year; turning it off does not undo what browsers remember)",
    check: int(0, 2 * 31_536_000),
  },
  tls_ca_file: {
    description: "a PEM file of CA certificates trusted besides the system's for wss:// destinations and https:// webhooks (a lab's own CA); empty: the system's only",
    check: (v) => {
      if (typeof v !== "string" || (v !== "" && !v.startsWith("/"))) return "allowed: empty, or an absolute path to a PEM file of CA certificates";
      if (v === "") return null;
      const r = readCaFile(v);
      return "problem" in r ? `${r.problem}; allowed: empty, or a readable regular PEM file of CA certificates, at most 1 MiB` : null;
    },
  },
  query_processes: { description: "query processes at most (each keeps a DuckDB open, about 75 MB plus what its queries use)", check: int(1, 16) },
  query_concurrency: { description: "queries one query process runs at once", check: int(1, 64) },
  query_queue: { description: "queries that may wait for a free slot; past that a query gets 503 with Retry-After", check: int(0, 10_000) },
  query_per_client: { description: "queries one client (by address) may have running or waiting for history; past that 429 with Retry-After", check: int(1, 1000) },
  query_result_mb: { description: "largest answer of one query, in MiB; a bigger one is cut with an error saying so", check: int(1, 4096) },
  query_cache_mb: { description: "answers kept for the same SQL over unchanged data, in MiB (never served once the log changed; not for SQL using now(), random() and the like); 0: none", check: int(0, 4096) },
  query_rss_mb: { description: "a query process using more memory than this (MiB, resident) is killed and its queries fail; the next query starts a new one", check: int(64, 65_536) },
  query_idle_seconds: { description: "a query process with no query for this long exits and gives its memory back; the next query starts it again (0: never)", check: int(0, 86_400) },
  query_yield_ms: { description: "a query running this long (ms) moves its query process to idle CPU priority (SCHED_IDLE) until it ends, so on a busy box the live path keeps its speed; dashboards' queries take less (0: never)", check: int(0, 3_600_000) },
  log_compact_memory_mb: { description: "memory DuckDB may use while compacting the spool to Parquet, in MiB (segments are compacted in batches that fit)", check: int(32, 65_536) },
  offload_enabled: {
    description: "upload the log's Parquet files to S3-compatible storage after compaction (keys <prefix>/node=<id>/stream=…/date=…/<file>), verified by size and checksum; local retention then removes only files verified remote. Credentials: SWITCHYARD_S3_ACCESS_KEY_ID and SWITCHYARD_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or PUT /api/offload/credentials; never shown back",
    check: (v) => (typeof v === "boolean" ? null : "allowed: true or false"),
  },
  offload_s3_url: { description: "the S3-compatible endpoint, e.g. https://s3.example.org:9000 (empty: AWS S3 in offload_region)", check: s3UrlProblem },
  offload_bucket: { description: "the bucket the log is offloaded to (it must exist)", check: bucketProblem },
  offload_prefix: { description: "the folder in the bucket the log's keys begin with (several boxes may share it: each writes under node=<its id>)", check: prefixProblem },
  offload_region: { description: "the bucket's region (signs the requests)", check: (v) => (typeof v === "string" && /^[a-z0-9-]{1,32}$/.test(v) ? null : "allowed: a region name of 1 to 32 of a-z 0-9 -, e.g. us-east-1") },
  offload_cache_mb: { description: "disk a remote query (switchyard query --remote) may use for downloaded partitions in DATA_DIR/remote-cache, in MiB; the least recently used go first", check: int(16, 1024 * 1024) },
  alert_offload_seconds: { description: "alert when offloading the log to S3 has failed for this long (files then stay on local disk, also past retention) (0: off)", check: int(0, 7 * 86_400) },
  recent_total_bytes: { description: "payload bytes kept in memory for recent messages across all streams; the least recently written stream goes first", check: int(0, 4 * 1024 * 1024 * 1024) },
};

/**
 * Validates a partial settings record. Returns the merged record, or throws a
 * InvalidInput whose fields name each bad field and what it allows.
 */
export function validateSettings(base: Settings, patch: Record<string, unknown>): Settings {
  // No prototype: a key like __proto__ or constructor is just an unknown key here.
  const errors: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(patch)) {
    const spec = Object.hasOwn(SETTING_FIELDS, key) ? SETTING_FIELDS[key as keyof Settings] : undefined;
    if (!spec) {
      errors[key] = `unknown setting; known: ${Object.keys(SETTING_FIELDS).join(", ")}`;
      continue;
    }
    const problem = spec.check(value);
    if (problem) errors[key] = `${JSON.stringify(value)} is not valid; ${problem}`;
  }
  if (Object.keys(errors).length > 0) {
    const summary = Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("; ");
    throw new InvalidInput(`invalid settings: ${summary}`, errors);
  }
  const merged = { ...base, ...patch } as Settings;
  if ((merged.udp_format === "raw" || merged.udp_format === "text") && merged.udp_stream === "") {
    throw new InvalidInput(`invalid settings: udp_stream: udp_format ${merged.udp_format} needs a stream to feed; allowed: a stream name`, { udp_stream: "required when udp_format is raw or text" });
  }
  if (merged.offload_enabled && merged.offload_bucket === "") {
    throw new InvalidInput("invalid settings: offload_bucket: offloading needs a bucket; allowed: a bucket name: " + BUCKET_RULE, { offload_bucket: "required when offload_enabled is true" });
  }
  if (merged.udp_format === "line" && merged.udp_stream !== "") {
    throw new InvalidInput("invalid settings: udp_stream: udp_format line takes the stream from each line; leave udp_stream empty", { udp_stream: "must be empty when udp_format is line" });
  }
  return merged;
}
