import { MAX_TOKEN_TTL_SECONDS, newTokenSecret, SCOPES, signStreamToken } from "../auth/stream-token.ts";
import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { DURATION_RULE, parseDurationSeconds } from "../core/duration.ts";
import { UsageError } from "../core/errors.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { STREAMS_EVENTS_STREAM } from "../hub/stream-events.ts";
import { TOKEN_SECRET_NAME } from "../server.ts";
import { relaySecret } from "../relay/relay-secret.ts";

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateTokenBatch, parseTokenBatch, tokenFiles } from "../auth/token-batch.ts";
import { parseCommandArgs, type Command, type CommandIO } from "./command.ts";
import { adminTokenSecret, revokeAdminTokens, signAdminToken } from "../auth/admin-token.ts";
import { openOwnStore } from "./data-dir.ts";

/** `switchyard token`: prints a stream token signed with this box's secret. */
export const token: Command = {
  name: "token",
  summary: "print a stream token (JWT) for a stream, or write tokens for a range of devices",
  usage: `Usage: switchyard token --stream NAME [--scopes read,write] [--ttl 365d] [--audience URL] [--data-dir DIR]
       switchyard token --admin [--ttl 1h] [--data-dir DIR]
       switchyard token --revoke-admin [--data-dir DIR]
       switchyard token --prefix spin --from 30 --to 41 --kind log --access-url URL --out DIR [--scopes] [--ttl]

Prints an HS256 token with practable's claims (topic, scopes, aud, iat, nbf, exp),
signed with the secret in the data dir's settings store, and a newline.

Options:
  --stream NAME     the stream (token topic); a trailing * covers every stream starting with the rest
  --scopes LIST     comma-separated: read, write (default read,write)
  --ttl DURATION    lifetime, ${DURATION_RULE} (default 365d)
  --audience URL    put this URL in aud (the box's public_url, when it checks audiences)
  --data-dir DIR    the data dir whose secret signs the token (default ./data)
  --relay-secret    sign with the imported practable relay secret (switchyard secret set),
                    so the token works on that practable relay too
  --booking-id ID   put practable's booking_id claim in (range mode: default relay-token-cli)

Admin tokens (--admin) give what an admin UI session gives (settings, queries,
destinations, Slack, Grafana) to scripts: send one as Authorization: Bearer <token>.
They are signed with their own key, which only the data dir's owner can read (stream
tokens never give admin power). --ttl defaults to 1h for them. --revoke-admin makes
every admin token made so far stop working, at once, also on a running server.

Range mode (as practable's configure script): for each N from --from to --to, writes
DIR/<kind>.access.<prefix>N (URL/session/<prefix>N-<kind>) and DIR/<kind>.token.<prefix>N
(a token for topic <prefix>N-<kind>, audience URL), mode 0600, and prints the files' names.
  --prefix NAME     device name prefix, e.g. spin
  --from N, --to N  the range of device numbers (at most 1000 devices)
  --kind KIND       e.g. log, data, video
  --access-url URL  the relay's access URL (https://relay.example.org/access)
  --out DIR         folder to write the files to (created if missing)`,
  async run(argv, io) {
    const { values } = parseCommandArgs("token", argv, {
      ...startupParseOptions,
      stream: { type: "string" }, scopes: { type: "string" }, ttl: { type: "string" }, audience: { type: "string" },
      admin: { type: "boolean" }, "revoke-admin": { type: "boolean" },
      "relay-secret": { type: "boolean" }, "booking-id": { type: "string" },
      prefix: { type: "string" }, from: { type: "string" }, to: { type: "string" }, kind: { type: "string" }, "access-url": { type: "string" }, out: { type: "string" },
    });
    if (values.help) return io.out(this.usage + "\n"), 0;
    if (values.admin || values["revoke-admin"]) return adminToken(values, io);
    if (values.prefix !== undefined) return batch(values, io);
    const stream = values.stream;
    if (!stream) throw new UsageError("token: --stream is required; e.g. switchyard token --stream spin30");
    const topicProblem = stream === STREAMS_EVENTS_STREAM || stream === "*" ? null : streamNameProblem(stream.replace(/\*$/, "") || "x");
    if (topicProblem) throw new UsageError(`token: --stream: ${topicProblem} (or a prefix ending in *)`);
    const scopes = (values.scopes ?? "read,write").split(",").map((s) => s.trim()).filter(Boolean);
    if (scopes.includes("admin")) throw new UsageError("token: --scopes: 'admin' is not a stream scope; admin power needs an admin token: switchyard token --admin");
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (bad.length > 0 || scopes.length === 0) throw new UsageError(`token: --scopes: ${JSON.stringify(values.scopes)} is not valid; allowed: a comma-separated list of ${SCOPES.join(", ")}`);
    const ttl = parseDurationSeconds(values.ttl ?? "365d");
    if (ttl === null || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) throw new UsageError(`token: --ttl: ${JSON.stringify(values.ttl)} is not a duration from 1s to 100y; allowed: ${DURATION_RULE}, at least 1s, at most 100y`);
    if (values.audience !== undefined && !/^(https?|wss?):\/\/\S+$/.test(values.audience)) {
      throw new UsageError(`token: --audience: ${JSON.stringify(values.audience)} is not a URL; allowed: an http(s):// or ws(s):// URL`);
    }
    const { config } = resolveStartupConfig(values, io.env);
    const store = SettingsStore.open(config.dataDir);
    try {
      const secret = signingSecret(values, config.relaySecret, store);
      io.out((await signStreamToken(secret, { topic: stream, scopes, ttlSeconds: ttl, audience: values.audience, bookingId: values["booking-id"] })) + "\n");
    } finally {
      store.close();
    }
    return 0;
  },
};

/** `switchyard token --admin` and `--revoke-admin`: only for whoever can read the data dir's store. */
async function adminToken(values: Record<string, string | boolean | undefined>, io: CommandIO): Promise<number> {
  const clash = ["stream", "scopes", "audience", "prefix"].filter((k) => values[k] !== undefined);
  if (clash.length > 0) throw new UsageError(`token: --admin and --revoke-admin take only --ttl and --data-dir, not ${clash.map((k) => `--${k}`).join(", ")}`);
  if (values.admin && values["revoke-admin"]) throw new UsageError("token: --admin and --revoke-admin do not go together");
  const ttlText = typeof values.ttl === "string" ? values.ttl : "1h";
  const ttl = parseDurationSeconds(ttlText);
  if (ttl === null || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) throw new UsageError(`token: --ttl: ${JSON.stringify(ttlText)} is not a duration from 1s to 100y; allowed: ${DURATION_RULE}, at least 1s, at most 100y`);
  const { config } = resolveStartupConfig(values, io.env);
  const store = openOwnStore(config.dataDir, values.admin ? "token --admin" : "token --revoke-admin");
  try {
    if (values["revoke-admin"]) {
      revokeAdminTokens(store);
      io.out("every admin token made so far is revoked (a new signing key is in force)\n");
    } else {
      io.out((await signAdminToken(adminTokenSecret(store), ttl)) + "\n");
    }
  } finally {
    store.close();
  }
  return 0;
}

/** This box's secret, or with --relay-secret the imported practable relay secret (a UsageError when there is none). */
function signingSecret(values: Record<string, unknown>, fromEnv: string | null | undefined, store: SettingsStore): string {
  if (!values["relay-secret"]) return store.secret(TOKEN_SECRET_NAME, newTokenSecret);
  const imported = relaySecret(fromEnv, store).secret;
  if (!imported) throw new UsageError("token: --relay-secret: no practable relay secret is set; import it with: switchyard secret set --stdin");
  return imported;
}

/** `switchyard token --prefix …`: the range mode, sharing the admin page's generator. */
async function batch(values: Record<string, string | boolean | undefined>, io: CommandIO): Promise<number> {
  const str = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  if (str("stream")) throw new UsageError("token: --stream and --prefix do not go together; --prefix makes one token per device of a range");
  if (!str("out")) throw new UsageError("token: --out DIR is required with --prefix (the folder for the access and token files)");
  const parsed = parseTokenBatch({
    prefix: str("prefix"), from: str("from"), to: str("to"), kind: str("kind"), access_url: str("access-url"),
    scopes: str("scopes")?.split(","), ttl: str("ttl"), booking_id: str("booking-id"),
  });
  if ("errors" in parsed) {
    const flag = (k: string) => `--${k.replace("_", "-")}`;
    throw new UsageError(`token: ${Object.entries(parsed.errors).map(([k, v]) => `${flag(k)}: ${v}`).join("; ")}`);
  }
  const { config } = resolveStartupConfig(values, io.env);
  const store = SettingsStore.open(config.dataDir);
  let tokens;
  try {
    tokens = await generateTokenBatch(signingSecret(values, config.relaySecret, store), parsed.request);
  } finally {
    store.close();
  }
  const out = str("out")!;
  mkdirSync(out, { recursive: true });
  for (const f of tokenFiles(parsed.request.kind, tokens)) {
    writeFileSync(join(out, f.name), f.content, { mode: 0o600 });
    io.out(join(out, f.name) + "\n");
  }
  return 0;
}
