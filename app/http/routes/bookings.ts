import type { Context, Hono, MiddlewareHandler } from "hono";
import { TokenError, verifyStreamToken } from "../../auth/stream-token.ts";
import { AppError, badRequest } from "../../core/errors.ts";
import { expiryIso, MAX_EXP } from "../../relay/bookings.ts";
import { relaySecret } from "../../relay/relay-secret.ts";
import { requireAdmin } from "../admin.ts";
import { apiCsrf } from "../csrf.ts";
import { readJsonObject } from "../body.ts";
import type { HttpDeps, HttpEnv } from "../deps.ts";

/** practable's scope for booking control. */
const RELAY_ADMIN_SCOPE = "relay:admin";
/** practable's scope for GET /status (its connection reports). */
const RELAY_STATS_SCOPE = "relay:stats";
/** How long a deny or allow lasts when no exp is given. */
const DEFAULT_SECONDS = 24 * 3600;

/** A booking id: what practable's booking system puts in tokens (any printable text up to 256 characters). */
function bookingIdProblem(bid: unknown): string | null {
  if (typeof bid !== "string" || bid === "") return "booking id missing; allowed: the booking_id of the tokens, 1 to 256 printable characters";
  if (bid.length > 256 || /[\u0000-\u001f\u007f]/.test(bid)) return "booking id is not valid; allowed: 1 to 256 printable characters";
  return null;
}

/** An expiry in seconds since the epoch, in the future: a number, digits, or an ISO time; default now + 24 h. */
function parseExp(value: unknown, now = Date.now() / 1000): number {
  if (value === undefined || value === null || value === "") return Math.floor(now) + DEFAULT_SECONDS;
  const n = typeof value === "number" ? value : /^\d+$/.test(String(value)) ? Number(value) : Date.parse(String(value)) / 1000;
  if (!Number.isFinite(n) || n <= now) throw badRequest(`exp: ${JSON.stringify(value)} is missing or in the past; allowed: a future time, as seconds since the epoch or an ISO time (default: 24 h from now)`);
  if (n > MAX_EXP) throw badRequest(`exp: ${JSON.stringify(value)} is after 9999-12-31T23:59:59Z; allowed: a future time up to ${MAX_EXP} (9999-12-31T23:59:59Z), as seconds since the epoch or an ISO time`);
  return Math.floor(n);
}

/**
 * Who may control bookings: the admin (a session or an admin token),
 * or, as on practable's relay, a token with the scope `relay:admin` (or for
 * /status `relay:stats`) signed with the imported practable relay secret (what
 * a booking system already holds) whose audience names this relay, as for
 * /session: a token for another relay sharing the secret is refused.
 */
const bookingAdmin = (deps: HttpDeps, scopes: readonly string[] = [RELAY_ADMIN_SCOPE]): MiddlewareHandler<HttpEnv> => {
  const admin = requireAdmin(deps);
  return async function bookingAdmin(c, next) {
    const header = c.req.header("authorization")?.replace(/^Bearer\s+/i, "").trim();
    const imported = relaySecret(deps.config.relaySecret, deps.store).secret;
    if (header && imported) {
      try {
        const claims = await verifyStreamToken(imported, header, deps.sessions.audiences(), { topicOptional: true });
        if (claims.aud && claims.aud.length > 0 && claims.scopes.some((s) => scopes.includes(s))) return next();
      } catch (err) {
        if (!(err instanceof TokenError)) throw err;
      }
    }
    return admin(c, next);
  };
};

/**
 * Binds booking control. Switchyard's API: GET /api/bookings (denied and allowed
 * booking ids, and the open connections with their booking ids), POST
 * /api/bookings/deny and /api/bookings/allow with {"booking_id", "exp"?}.
 * practable's relay API, same effect: POST /bids/deny?bid=&exp= and
 * /bids/allow?bid=&exp= (204), GET /bids/deny and /bids/allow
 * ({"booking_ids": […]}), GET /status (the connections).
 */
export function bindBookingRoutes(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const guard = bookingAdmin(deps);
  app.use("/api/bookings", guard);
  app.use("/api/bookings/*", guard);
  app.use("/bids/*", apiCsrf(deps), guard);
  app.use("/status", bookingAdmin(deps, [RELAY_ADMIN_SCOPE, RELAY_STATS_SCOPE]));

  const view = () => ({ denied: deps.bookings.deniedList(), allowed: deps.bookings.allowedList(), connections: deps.bookings.connections() });
  app.get("/api/bookings", (c) => c.json(view()));
  const change = (action: "deny" | "allow") => async (c: Context<HttpEnv>) => {
    const body = await readJsonObject(c.req.raw, '{"booking_id": "b-123", "exp": 1767225600}');
    const problem = bookingIdProblem(body.booking_id);
    if (problem) throw badRequest(`booking_id: ${problem}`);
    const exp = parseExp(body.exp);
    const bid = body.booking_id as string;
    const closed = action === "deny" ? deps.bookings.deny(bid, exp) : (deps.bookings.allow(bid, exp), 0);
    deps.logger.info(`booking ${action === "deny" ? "denied" : "allowed"}`, { booking_id: bid, until: expiryIso(exp), closed });
    return c.json({ booking_id: bid, exp, closed, ...view() });
  };
  app.post("/api/bookings/deny", change("deny"));
  app.post("/api/bookings/allow", change("allow"));

  const practable = (action: "deny" | "allow") => (c: Context<HttpEnv>) => {
    const bid = c.req.query("bid");
    const problem = bookingIdProblem(bid);
    if (problem) return c.json({ code: 400, message: "bid (booking id) missing", detail: problem }, 400);
    let exp: number;
    try {
      exp = parseExp(c.req.query("exp"));
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      return c.json({ code: 400, message: `booking expiry time (exp) of [${c.req.query("exp") ?? ""}] missing or in the past`, detail: err.message }, 400);
    }
    if (action === "deny") deps.bookings.deny(bid!, exp);
    else deps.bookings.allow(bid!, exp);
    deps.logger.info(`booking ${action === "deny" ? "denied" : "allowed"}`, { booking_id: bid, until: expiryIso(exp) });
    return c.body(null, 204);
  };
  app.post("/bids/deny", practable("deny"));
  app.post("/bids/allow", practable("allow"));
  app.get("/bids/deny", (c) => c.json({ booking_ids: deps.bookings.deniedList().map((b) => b.booking_id) }));
  app.get("/bids/allow", (c) => c.json({ booking_ids: deps.bookings.allowedList().map((b) => b.booking_id) }));
  app.get("/status", (c) => c.json(deps.bookings.connections()));
}
