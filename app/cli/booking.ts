import { resolveStartupConfig, startupParseOptions } from "../config/startup.ts";
import { UsageError } from "../core/errors.ts";
import { parseDurationSeconds, DURATION_RULE } from "../core/duration.ts";
import { parseCommandArgs, type Command } from "./command.ts";
import { adminTokenSecret, signAdminToken } from "../auth/admin-token.ts";
import { runningServer } from "../config/server-file.ts";
import { openOwnStore } from "./data-dir.ts";

/** `switchyard booking deny|allow|list`: practable's booking control, on the running server. */
export const booking: Command = {
  name: "booking",
  summary: "deny or allow a booking id (its relay sessions are dropped), or list bookings and connections",
  usage: `Usage:
  switchyard booking deny BOOKING_ID [--for 24h]   close its relay sessions now and refuse new ones
  switchyard booking allow BOOKING_ID [--for 24h]  undo a deny
  switchyard booking list                          denied and allowed booking ids, and the connections

Talks to the running server (booking lists live in its memory, as on practable's
relay) at --url (default: the server of --data-dir, else http://127.0.0.1:PORT with
PORT from --port / SWITCHYARD_PORT, else 8888), with a short-lived admin token
signed from the data dir (so only whoever can read the data dir may use it);
--token sends an admin token of your own instead.

Options:
  --for DURATION    how long the deny or allow lasts, ${DURATION_RULE} (default 24h)
  --url URL         the server's base URL
  --token JWT       an admin token`,
  async run(argv, io) {
    const { values, positionals } = parseCommandArgs("booking", argv, { ...startupParseOptions, for: { type: "string" }, url: { type: "string" }, token: { type: "string" } }, true);
    if (values.help) return io.out(this.usage + "\n"), 0;
    const [action, bid, ...rest] = positionals;
    if (!action || !["deny", "allow", "list"].includes(action)) throw new UsageError(`booking: say what to do: deny ID, allow ID or list${action ? ` (not ${JSON.stringify(action)})` : ""}`);
    if (action !== "list" && !bid) throw new UsageError(`booking: ${action} needs the booking id: switchyard booking ${action} BOOKING_ID`);
    if (rest.length > 0 || (action === "list" && bid)) throw new UsageError(`booking: unexpected ${JSON.stringify([...(action === "list" ? [bid] : []), ...rest].join(" "))}`);
    const seconds = parseDurationSeconds(values.for ?? "24h");
    if (seconds === null || seconds < 1) throw new UsageError(`booking: --for: ${JSON.stringify(values.for)} is not a duration; allowed: ${DURATION_RULE}`);
    const { config } = resolveStartupConfig(values, io.env);
    const base = (values.url ?? runningServer(config.dataDir)?.url ?? `http://127.0.0.1:${config.port || 8888}`).replace(/\/+$/, "");
    let token = values.token;
    if (!token) {
      const store = openOwnStore(config.dataDir, `booking ${action}`);
      try {
        token = await signAdminToken(adminTokenSecret(store), 60);
      } finally {
        store.close();
      }
    }
    const headers: Record<string, string> = { "Content-Type": "application/json", Authorization: `Bearer ${token}` };
    let res: Response;
    try {
      res = action === "list"
        ? await fetch(`${base}/api/bookings`, { headers })
        : await fetch(`${base}/api/bookings/${action}`, { method: "POST", headers, body: JSON.stringify({ booking_id: bid, exp: Math.floor(Date.now() / 1000) + seconds }) });
    } catch (err) {
      io.err(`booking: cannot reach the server at ${base}: ${(err as Error).message}\n`);
      return 1;
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try { message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text; } catch { /* not JSON */ }
      io.err(`booking: the server answered ${res.status}: ${message}\n`);
      return 1;
    }
    const body = JSON.parse(text) as { closed?: number; exp?: number; denied: { booking_id: string; exp: number }[]; allowed: { booking_id: string; exp: number }[]; connections: { stream: string; origin: string; booking_id: string | null }[] };
    if (action === "deny") io.out(`denied ${bid} until ${new Date(body.exp! * 1000).toISOString()}; closed ${body.closed} connection${body.closed === 1 ? "" : "s"}\n`);
    else if (action === "allow") io.out(`allowed ${bid} until ${new Date(body.exp! * 1000).toISOString()}\n`);
    else {
      const until = (e: { exp: number }) => new Date(e.exp * 1000).toISOString();
      io.out(`denied:${body.denied.length ? "" : " none"}\n${body.denied.map((d) => `  ${d.booking_id}  until ${until(d)}\n`).join("")}`);
      io.out(`allowed:${body.allowed.length ? "" : " none"}\n${body.allowed.map((d) => `  ${d.booking_id}  until ${until(d)}\n`).join("")}`);
      io.out(`connections:${body.connections.length ? "" : " none"}\n${body.connections.map((c) => `  ${c.stream}  ${c.origin}  booking ${c.booking_id ?? "-"}\n`).join("")}`);
    }
    return 0;
  },
};
