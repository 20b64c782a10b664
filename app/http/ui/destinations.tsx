import type { Hono } from "hono";
import { badInput } from "../errors.ts";
import { destinationView } from "../../relay/destinations.ts";
import { parseRule } from "../../relay/rule.ts";
import { redactDestination, restoreRedactedDestination } from "../../relay/secret-url.ts";
import { DestinationForm, DestinationsPage, DestinationsTable, EMPTY_DESTINATION, type DestinationFormValues } from "../../../views/destinations.tsx";
import { Notice } from "../../../views/layout.tsx";
import type { HttpDeps, HttpEnv } from "../deps.ts";
import { formFields, html, livePage } from "./support.ts";

/** A relative record-file name for the form (rules hold the full path inside the records dir). */
function fileField(deps: HttpDeps, file: string): string {
  return file.startsWith(deps.recordsDir + "/") ? file.slice(deps.recordsDir.length + 1) : file;
}

/** Binds /admin/destinations: the live list, add/edit (the API's rules), reconnect and delete. */
export function bindDestinationPages(app: Hono<HttpEnv>, deps: HttpDeps): void {
  const views = () => deps.destinations.list().map(destinationView);
  app.get("/admin/destinations", (c) => c.html(<DestinationsPage destinations={views()} />));
  app.get("/admin/events/destinations", (c) => livePage(c, async () => ({ destinations: await html(<DestinationsTable destinations={views()} />) })));

  app.get("/admin/destinations/edit", (c) => {
    const id = c.req.query("id");
    if (!id) return c.html(<DestinationForm values={EMPTY_DESTINATION} />);
    const d = deps.destinations.get(id);
    if (!d) return c.html(<DestinationForm values={EMPTY_DESTINATION} notice={`no destination ${JSON.stringify(id)}: it may have been deleted`} />, 404);
    const r = d.rule;
    return c.html(<DestinationForm editing values={{ id: r.id, stream: r.stream, destination: redactDestination(r.destination, r.kind), token: "", file: fileField(deps, r.file), kind: r.kind, batch: String(r.batch), resume: r.resume ? "1" : "" }} />);
  });

  app.post("/admin/destinations", async (c) => {
    const form = await formFields(c);
    const values: DestinationFormValues = { ...EMPTY_DESTINATION, ...form };
    const editing = form.editing === "1";
    // Editing (the id cannot change there): an empty token keeps the rule's token, "-" removes it.
    let token = values.token;
    if (editing) {
      const current = deps.destinations.get(values.id);
      if (!current) return c.html(<DestinationForm values={{ ...values, token: "" }} notice={`no destination ${JSON.stringify(values.id)} to edit: it was deleted; add it again`} />, 404);
      if (token === "") token = current.rule.token;
    }
    if (token === "-") token = "";
    const batch = /^\d+$/.test(values.batch.trim()) ? Number(values.batch) : values.batch;
    try {
      // An unchanged (redacted) URL keeps the stored one, as an empty token keeps the token.
      const destination = restoreRedactedDestination({ destination: values.destination }, deps.destinations.get(values.id)?.rule).destination;
      // The form has no record format field: an edited rule keeps its own (new rules record raw bytes, as practable).
      const recordFormat = editing ? deps.destinations.get(values.id)?.rule.record_format : undefined;
      const rule = parseRule({ id: values.id, stream: values.stream, destination, token, file: values.file, kind: values.kind, batch, resume: values.resume === "1", ...(recordFormat ? { record_format: recordFormat } : {}) }, deps.recordsDir);
      const existed = deps.destinations.get(rule.id) !== undefined;
      await deps.destinations.upsert(rule);
      return c.html(
        <>
          <Notice kind="ok" text={`destination ${rule.id} ${existed ? "replaced" : "added"}: relaying stream ${rule.stream}`} />
          <DestinationForm values={EMPTY_DESTINATION} />
        </>,
      );
    } catch (err) {
      const bad = badInput(err);
      if (!bad) throw err;
      return c.html(<DestinationForm values={values} editing={editing} errors={bad.fields} notice={Object.keys(bad.fields).length ? undefined : bad.message} />, 422);
    }
  });

  app.post("/admin/destinations/reconnect", async (c) => {
    const { id = "" } = await formFields(c);
    const d = deps.destinations.get(id);
    if (!d) return c.html(<Notice kind="bad" text={`no destination ${JSON.stringify(id)}`} />, 404);
    d.reconnect();
    return c.html(<Notice kind="ok" text={`destination ${id}: reconnecting now`} />);
  });

  app.post("/admin/destinations/delete", async (c) => {
    const { id = "" } = await formFields(c);
    if (!deps.destinations.get(id)) return c.html(<Notice kind="bad" text={`no destination ${JSON.stringify(id)}`} />, 404);
    await deps.destinations.remove(id);
    return c.html(<Notice kind="ok" text={`destination ${id} deleted`} />);
  });
}
