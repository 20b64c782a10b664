import { badRequest } from "../core/errors.ts";

/** Who may use streams without a token. */
export const ACCESS_POLICIES = ["open", "loopback-open", "token"] as const;
export type AccessPolicy = (typeof ACCESS_POLICIES)[number];

/** What happens to a subscriber whose unsent data passes the backpressure limit. */
export const BACKPRESSURE_POLICIES = ["drop", "disconnect"] as const;
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

/** Runtime settings: one validated record, stored in the settings store, applied live unless noted. */
export interface Settings {
  access: AccessPolicy;
  backpressure_policy: BackpressurePolicy;
  backpressure_limit_bytes: number;
  max_message_bytes: number;
  max_connections: number;
  keepalive_seconds: number;
  stream_linger_seconds: number;
  public_url: string;
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
  backpressure_policy: "drop",
  backpressure_limit_bytes: 1024 * 1024,
  max_message_bytes: 1024 * 1024,
  max_connections: 10_000,
  keepalive_seconds: 60,
  stream_linger_seconds: 30,
  public_url: "",
};

/** What each setting means and allows. */
export const SETTING_FIELDS: Record<keyof Settings, FieldSpec> = {
  access: { description: "open: no tokens; loopback-open: clients on 127.0.0.0/8 and ::1 need no token; token: every client needs one", check: oneOf(ACCESS_POLICIES) },
  backpressure_policy: { description: "drop: a slow subscriber loses messages (counted); disconnect: it is closed with code 1013", check: oneOf(BACKPRESSURE_POLICIES) },
  backpressure_limit_bytes: { description: "bytes a subscriber may have waiting to be sent before the policy applies", restart: true, check: int(64 * 1024, 1024 ** 3) },
  max_message_bytes: { description: "largest message accepted, in bytes (websocket close 1009, HTTP 413 above it)", restart: true, check: int(1, 64 * 1024 * 1024) },
  max_connections: { description: "most websocket connections at once; more are closed with code 1013", check: int(1, 1_000_000) },
  keepalive_seconds: { description: "a connection that sends nothing (not even a pong) for this long is closed; pings go out before that", restart: true, check: int(8, 960) },
  stream_linger_seconds: { description: "how long a stream with no clients and no messages stays listed", check: int(0, 86_400) },
  public_url: {
    description: "the URL this box is reached at (e.g. https://relay.example.org); tokens with an audience must name it",
    check: (v) => (typeof v === "string" && (v === "" || /^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(v)) ? null : "allowed: empty, or an http:// or https:// URL"),
  },
};

/**
 * Validates a partial settings record. Returns the merged record, or throws a
 * 400 AppError whose data names each bad field and what it allows.
 */
export function validateSettings(base: Settings, patch: Record<string, unknown>): Settings {
  const errors: Record<string, string> = {};
  for (const [key, value] of Object.entries(patch)) {
    const spec = SETTING_FIELDS[key as keyof Settings];
    if (!spec) {
      errors[key] = `unknown setting; known: ${Object.keys(SETTING_FIELDS).join(", ")}`;
      continue;
    }
    const problem = spec.check(value);
    if (problem) errors[key] = `${JSON.stringify(value)} is not valid; ${problem}`;
  }
  if (Object.keys(errors).length > 0) {
    const summary = Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("; ");
    throw badRequest(`invalid settings: ${summary}`, { fields: errors });
  }
  return { ...base, ...patch } as Settings;
}
