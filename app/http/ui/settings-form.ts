import { ACCESS_POLICIES, BACKPRESSURE_POLICIES, DEFAULT_SETTINGS, SETTING_FIELDS, validateSettings, type Settings } from "../../config/settings.ts";
import type { SettingsStore } from "../../config/store.ts";
import { badInput } from "../errors.ts";
import { UDP_FORMATS } from "../../core/udp-spec.ts";
import type { SettingInput } from "../../../views/settings.tsx";

const CHOICES: Partial<Record<keyof Settings, readonly string[]>> = { access: ACCESS_POLICIES, backpressure_policy: BACKPRESSURE_POLICIES, udp_format: UDP_FORMATS };

/** The form inputs of some settings, from their defaults' types and allowed values. */
export function settingInputs(keys: (keyof Settings)[]): SettingInput[] {
  return keys.map((key) => {
    const d = DEFAULT_SETTINGS[key];
    const spec = SETTING_FIELDS[key];
    return {
      key, description: spec.description, restart: spec.restart ?? false, choices: CHOICES[key],
      kind: typeof d === "boolean" ? "boolean" : typeof d === "number" ? "number" : d === null ? "optional-number" : typeof d === "string" ? "string" : "json",
    };
  });
}

/** Every setting as the form shows it. */
export function settingValues(s: Settings): Record<string, string> {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === "string" ? v : v === null ? "" : JSON.stringify(v)]));
}

/** Groups of the Settings page (the alert_* settings are on the Slack page). */
export const SETTING_GROUPS: { id: string; title: string; keys: (keyof Settings)[] }[] = [
  { id: "ports", title: "Ports", keys: ["http_port", "udp_port"] },
  { id: "access", title: "Access", keys: ["access", "practable_loopback_api", "trusted_proxies", "public_url", "cors_origins"] },
  { id: "hub", title: "Websocket hub", keys: ["backpressure_policy", "backpressure_limit_bytes", "max_message_bytes", "max_connections", "keepalive_seconds", "stream_linger_seconds", "publish_dedup_seconds"] },
  { id: "udp", title: "UDP ingest", keys: ["udp_format", "udp_stream", "udp_stream_field", "udp_allow", "udp_allow_sources", "udp_max_datagram_bytes", "udp_listeners", "udp_receive_buffer_bytes"] },
  { id: "log", title: "Log and retention", keys: ["log_retention_days", "log_retention_bytes", "log_exclude", "log_deliver_unlogged", "log_fsync_ms", "log_segment_bytes", "log_segment_seconds", "log_compact_seconds", "log_compact_memory_mb"] },
  { id: "memory", title: "Memory and relays", keys: ["recent_messages_per_stream", "recent_bytes_per_stream", "recent_total_bytes", "relay_buffer_bytes", "relay_silence_seconds", "relay_record_max_bytes", "relay_catchup_messages_per_second", "relay_catchup_bytes_per_second"] },
  { id: "queries", title: "Queries", keys: ["query_threads", "query_memory_mb", "query_timeout_seconds", "query_processes", "query_concurrency", "query_queue", "query_per_client", "query_result_mb", "query_cache_mb", "query_rss_mb", "query_idle_seconds", "query_yield_ms"] },
  { id: "tls", title: "TLS", keys: ["hsts_seconds", "tls_ca_file"] },
  { id: "cluster", title: "Cluster (NATS)", keys: ["nats_servers"] },
  { id: "offload", title: "Offload to S3", keys: ["offload_enabled", "offload_s3_url", "offload_bucket", "offload_prefix", "offload_region", "offload_cache_mb"] },
];

/** The alert rules of the Slack page. */
export const ALERT_KEYS = (Object.keys(SETTING_FIELDS) as (keyof Settings)[]).filter((k) => k.startsWith("alert_"));

/** What saving a settings form did: the values to show again, errors by field, and a notice. */
export interface SettingsSave {
  values: Record<string, string>;
  errors?: Record<string, string>;
  notice: { kind: "ok" | "bad" | "warn"; text: string };
}

/**
 * Saves the posted fields of one group through the settings store (the same
 * validation as PATCH /api/settings). Bad input keeps what was typed and puts each
 * error next to its field; nothing is saved then.
 */
export function saveSettingsForm(store: SettingsStore, keys: (keyof Settings)[], form: Record<string, string>): SettingsSave {
  const inputs = settingInputs(keys);
  const patch: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const f of inputs) {
    const raw = form[f.key];
    if (raw === undefined) continue;
    const text = raw.trim();
    if (f.kind === "boolean") patch[f.key] = text === "true";
    else if (f.kind === "optional-number" && text === "") patch[f.key] = null;
    else if (f.kind === "number" || f.kind === "optional-number") {
      if (!/^-?\d+$/.test(text)) errors[f.key] = `${JSON.stringify(raw)} is not a whole number`;
      else patch[f.key] = Number(text);
    } else if (f.kind === "json") {
      try {
        patch[f.key] = JSON.parse(text === "" ? "[]" : text);
      } catch {
        errors[f.key] = `not valid JSON; e.g. ${JSON.stringify(DEFAULT_SETTINGS[f.key]) === "[]" ? '["pattern*"]' : JSON.stringify(DEFAULT_SETTINGS[f.key])}`;
      }
    } else patch[f.key] = text;
  }
  const typed = { ...settingValues(store.settings), ...form };
  if (Object.keys(errors).length > 0) {
    // Check the fields that did parse too, so every problem shows at once.
    try {
      validateSettings(store.settings, patch);
    } catch (err) {
      const bad = badInput(err);
      if (!bad) throw err;
      Object.assign(errors, bad.fields, { ...errors });
    }
    return { values: typed, errors, notice: { kind: "bad", text: "nothing saved: fix the fields marked below" } };
  }
  const before = store.settings;
  try {
    const after = store.update(patch);
    const changed = Object.keys(patch).filter((k) => JSON.stringify(before[k as keyof Settings]) !== JSON.stringify(after[k as keyof Settings]));
    const restart = changed.filter((k) => SETTING_FIELDS[k as keyof Settings].restart);
    const text = changed.length === 0 ? "nothing changed" : `saved: ${changed.join(", ")}${restart.length ? `. Restart Switchyard for ${restart.join(", ")} to take effect` : "; applied now"}`;
    return { values: settingValues(after), notice: { kind: restart.length ? "warn" : "ok", text } };
  } catch (err) {
    const bad = badInput(err);
    if (!bad) throw err;
    return { values: typed, errors: bad.fields, notice: { kind: "bad", text: `nothing saved: ${bad.message}` } };
  }
}
