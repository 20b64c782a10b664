import type { Hono } from "hono";
import { RELAY_SECRET_NAME, relaySecretProblem } from "../../relay/relay-secret.ts";
import { BookingsCard, BookingsPage, RelaySecretCard } from "../../../views/bookings.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { relaySecretView } from "../../relay/relay-secret.ts";
import { formFields } from "./support.ts";

/** Binds /admin/bookings: import the practable relay secret, deny or allow booking ids, see connections with their booking ids. */
export function bindBookingPages(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const lists = () => ({ denied: deps.bookings.deniedList(), allowed: deps.bookings.allowedList(), connections: deps.bookings.connections() });
  app.get("/admin/bookings", (c) => c.html(<BookingsPage secret={relaySecretView(deps.config.relaySecret, deps.store)} {...lists()} />));

  app.post("/admin/bookings/secret", async (c) => {
    const { action = "set", secret = "" } = await formFields(c);
    if (action === "clear") {
      deps.store.setSecret(RELAY_SECRET_NAME, null);
      return c.html(<RelaySecretCard state={relaySecretView(deps.config.relaySecret, deps.store)} notice={{ kind: "ok", text: "The stored secret was removed." }} />);
    }
    const problem = relaySecretProblem(secret);
    if (problem) return c.html(<RelaySecretCard state={relaySecretView(deps.config.relaySecret, deps.store)} errors={{ secret: problem }} />, 422);
    deps.store.setSecret(RELAY_SECRET_NAME, secret);
    const view = relaySecretView(deps.config.relaySecret, deps.store);
    deps.logger.info("practable relay secret imported", { fingerprint: view.fingerprint });
    return c.html(<RelaySecretCard state={view} notice={{ kind: "ok", text: `Imported (fingerprint ${view.fingerprint}).` }} />);
  });

  app.post("/admin/bookings", async (c) => {
    const { action = "deny", booking_id: bid = "", hours = "24" } = await formFields(c);
    const errors: Record<string, string> = {};
    if (bid.trim() === "" || bid.length > 256 || /[\u0000-\u001f\u007f]/.test(bid)) errors.booking_id = "allowed: 1 to 256 printable characters";
    const h = Number(hours);
    if (!(h > 0 && h <= 24 * 366)) errors.hours = "allowed: a number of hours above 0, at most 8784 (a year)";
    if (Object.keys(errors).length > 0) return c.html(<BookingsCard {...lists()} errors={errors} />, 422);
    const exp = Math.floor(Date.now() / 1000 + h * 3600);
    const id = bid.trim();
    let text: string;
    if (action === "allow") {
      deps.bookings.allow(id, exp);
      text = `Allowed ${id} until ${new Date(exp * 1000).toISOString()}.`;
    } else {
      const closed = deps.bookings.deny(id, exp);
      text = `Denied ${id} until ${new Date(exp * 1000).toISOString()}; closed ${closed} connection(s).`;
    }
    deps.logger.info(`booking ${action === "allow" ? "allowed" : "denied"} from the admin page`, { booking_id: id });
    return c.html(<BookingsCard {...lists()} notice={{ kind: "ok", text }} />);
  });
}
