import { newTokenSecret, SCOPES, signStreamToken } from "../auth/stream-token.ts";
import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { SettingsStore } from "../config/store.ts";
import { DURATION_RULE, parseDurationSeconds } from "../core/duration.ts";
import { UsageError } from "../core/errors.ts";
import { streamNameProblem } from "../core/stream-name.ts";
import { STREAMS_EVENTS_STREAM } from "../hub/hub.ts";
import { TOKEN_SECRET_NAME } from "../server.ts";

import { parseCommandArgs, type Command } from "./command.ts";

/** `switchyard token`: prints a stream token signed with this box's secret. */
export const token: Command = {
  name: "token",
  summary: "print a stream token (JWT) for a stream",
  usage: `Usage: switchyard token --stream NAME [--scopes read,write] [--ttl 365d] [--audience URL] [--data-dir DIR]

Prints an HS256 token with practable's claims (topic, scopes, aud, iat, nbf, exp),
signed with the secret in the data dir's settings store, and a newline.

Options:
  --stream NAME     the stream (token topic); a trailing * covers every stream starting with the rest
  --scopes LIST     comma-separated: read, write (default read,write)
  --ttl DURATION    lifetime, ${DURATION_RULE} (default 365d)
  --audience URL    put this URL in aud (the box's public_url, when it checks audiences)
  --data-dir DIR    the data dir whose secret signs the token (default ./data)`,
  async run(argv, io) {
    const { values } = parseCommandArgs("token", argv, {
      ...startupParseOptions,
      stream: { type: "string" }, scopes: { type: "string" }, ttl: { type: "string" }, audience: { type: "string" },
    });
    if (values.help) return io.out(this.usage + "\n"), 0;
    const stream = values.stream;
    if (!stream) throw new UsageError("token: --stream is required; e.g. switchyard token --stream spin30");
    const topicProblem = stream === STREAMS_EVENTS_STREAM || stream === "*" ? null : streamNameProblem(stream.replace(/\*$/, "") || "x");
    if (topicProblem) throw new UsageError(`token: --stream: ${topicProblem} (or a prefix ending in *)`);
    const scopes = (values.scopes ?? "read,write").split(",").map((s) => s.trim()).filter(Boolean);
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (bad.length > 0 || scopes.length === 0) throw new UsageError(`token: --scopes: ${JSON.stringify(values.scopes)} is not valid; allowed: a comma-separated list of ${SCOPES.join(", ")}`);
    const ttl = parseDurationSeconds(values.ttl ?? "365d");
    if (ttl === null || ttl < 1) throw new UsageError(`token: --ttl: ${JSON.stringify(values.ttl)} is not a duration; allowed: ${DURATION_RULE}, at least 1s`);
    if (values.audience !== undefined && !/^(https?|wss?):\/\/\S+$/.test(values.audience)) {
      throw new UsageError(`token: --audience: ${JSON.stringify(values.audience)} is not a URL; allowed: an http(s):// or ws(s):// URL`);
    }
    const { config } = resolveStartupConfig(values, io.env);
    const store = SettingsStore.open(config.dataDir);
    try {
      const secret = store.secret(TOKEN_SECRET_NAME, newTokenSecret);
      io.out((await signStreamToken(secret, { topic: stream, scopes, ttlSeconds: ttl, audience: values.audience })) + "\n");
    } finally {
      store.close();
    }
    return 0;
  },
};


