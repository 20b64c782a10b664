import type { FC } from "hono/jsx";
import type { TlsState } from "../app/tls/server-tls.ts";
import { ago } from "./format.ts";

const DAY = 86_400_000;

/** Days until `iso`, rounded down (negative once past). */
function daysLeft(iso: string, now = Date.now()): number {
  return Math.floor((Date.parse(iso) - now) / DAY);
}

/** The certificate's expiry as a badge: red when failing or under 7 days, amber under 21. */
export const TlsExpiry: FC<{ tls: TlsState }> = ({ tls }) => {
  const days = daysLeft(tls.notAfter);
  const kind = tls.lastError || days < 7 ? "bad" : days < 21 ? "warn" : "ok";
  return (
    <div>
      <p>
        <span class={`badge ${kind}`} id="tls-expiry">expires {tls.notAfter.slice(0, 10)}</span>{" "}
        <span class="small muted">{days >= 1 ? `in ${days} days` : "within a day"}; {tls.names.join(", ")}</span>
      </p>
      {tls.acme?.nextRenewalAt && <p class="small muted">Renewal from {tls.acme.nextRenewalAt.slice(0, 16).replace("T", " ")} UTC ({tls.acme.directory})</p>}
      {tls.lastError && <p class="small" style="color:var(--bad)" id="tls-error">{tls.lastError}</p>}
    </div>
  );
};

/** The TLS state on the Settings page: how the certificate is kept, what it is, and when it runs out. */
export const TlsCard: FC<{ tls: TlsState | null }> = ({ tls }) => (
  <section class="card" id="tls">
    <h2>TLS</h2>
    {tls === null ? (
      <p class="small">
        Off: this box speaks plain HTTP and ws://. Start it with <code>--acme-domain NAME --acme-email ADDR</code> (a certificate from
        Let's Encrypt) or <code>--tls-cert FILE --tls-key FILE</code>; installed as a service, <code>install.sh --domain NAME --email ADDR</code> does it.
      </p>
    ) : (
      <div>
        <TlsExpiry tls={tls} />
        <table class="small">
          <tbody>
            <tr><th>Certificate from</th><td>{tls.mode === "acme" ? `ACME (${tls.acme?.directory})` : `files ${tls.files?.cert}, ${tls.files?.key} (re-read when changed or on SIGHUP)`}</td></tr>
            <tr><th>Subject</th><td>{tls.subject}</td></tr>
            <tr><th>Issuer</th><td>{tls.issuer}</td></tr>
            <tr><th>Valid</th><td>{tls.notBefore} to {tls.notAfter}</td></tr>
            <tr><th>Loaded</th><td>{ago(tls.lastLoadedAt)}</td></tr>
            <tr><th>Plain HTTP</th><td>{tls.redirectPort === 0 ? "no redirect port" : `port ${tls.redirectPort} redirects to HTTPS${tls.mode === "acme" ? " and answers ACME challenges" : ""}`}</td></tr>
          </tbody>
        </table>
      </div>
    )}
  </section>
);
