import type { FC } from "hono/jsx";
import type { S3Credentials } from "../app/config/startup.ts";
import { FieldError, Notice } from "./layout.tsx";

const SOURCES: Record<S3Credentials["source"], string> = {
  "SWITCHYARD_S3_*": "from SWITCHYARD_S3_ACCESS_KEY_ID and SWITCHYARD_S3_SECRET_ACCESS_KEY, which win over a saved pair",
  "AWS_*": "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which win over a saved pair",
  settings: "saved here",
};

/** The S3 credentials of the log offload: write-only (the page says only where the ones in force come from). */
export const OffloadCredentialsForm: FC<{ source: S3Credentials["source"] | null; errors?: Record<string, string>; notice?: { kind: "ok" | "bad" | "warn"; text: string } }> = ({ source, errors, notice }) => (
  <section class="card" id="offload-credentials">
    <h2>Offload credentials</h2>
    {notice && <Notice kind={notice.kind} text={notice.text} />}
    <p>{source ? <>S3 credentials are set ({SOURCES[source]}). They are never shown.</> : <>No S3 credentials are set: offloading the log cannot upload.</>}</p>
    <form class="stack" method="post" action="/admin/offload/credentials" hx-post="/admin/offload/credentials" hx-target="#offload-credentials" hx-swap="outerHTML">
      {(["access_key_id", "secret_access_key"] as const).map((name) => (
        <label>
          {name === "access_key_id" ? "Access key id" : "Secret access key"}
          <input type="password" name={name} autocomplete="off" aria-invalid={errors?.[name] ? "true" : undefined} aria-describedby={errors?.[name] ? `${name}-error` : undefined} />
          <FieldError errors={errors} name={name} />
        </label>
      ))}
      <div class="row">
        <button type="submit" name="action" value="save">Save credentials</button>
        {source === "settings" && <button type="submit" class="danger" name="action" value="remove">Remove credentials</button>}
      </div>
    </form>
  </section>
);
