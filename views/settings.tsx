import type { TlsState } from "../app/tls/server-tls.ts";
import { TlsCard } from "./tls.tsx";
import type { FC } from "hono/jsx";
import type { Settings } from "../app/config/settings.ts";
import type { ConfigSource, S3Credentials, StartupConfig } from "../app/config/startup.ts";
import { OffloadCredentialsForm } from "./offload.tsx";
import { FieldError, Layout, Notice } from "./layout.tsx";

/** How one setting is edited, from its default value and its allowed values. */
export interface SettingInput {
  key: keyof Settings;
  description: string;
  restart: boolean;
  /** Allowed values, for a select. */
  choices?: readonly string[];
  /** optional-number: a number, or empty for "not set" (null). */
  kind: "boolean" | "number" | "optional-number" | "string" | "json";
}

/** The inputs of a group of settings, each with its description and error. */
export const SettingsFields: FC<{ inputs: SettingInput[]; values: Record<string, string>; errors?: Record<string, string> }> = ({ inputs, values, errors }) => (
  <>
    {inputs.map((f) => {
      const invalid = errors?.[f.key] ? "true" : undefined;
      const describedBy = errors?.[f.key] ? `${f.key}-error` : undefined;
      const help = <span class="help">{f.description}{f.restart ? " (restart needed)" : ""}</span>;
      if (f.kind === "boolean") {
        return (
          <div>
            <input type="hidden" name={f.key} value="false" />
            <label class="checkbox"><input type="checkbox" name={f.key} value="true" checked={values[f.key] === "true"} aria-invalid={invalid} /> {f.key}</label>
            {help}
            <FieldError errors={errors} name={f.key} />
          </div>
        );
      }
      return (
        <label>
          {f.key}
          {f.choices ? (
            <select name={f.key} aria-invalid={invalid} aria-describedby={describedBy}>
              {f.choices.map((c) => <option value={c} selected={values[f.key] === c}>{c}</option>)}
            </select>
          ) : f.kind === "json" ? (
            <textarea name={f.key} rows={2} aria-invalid={invalid} aria-describedby={describedBy}>{values[f.key]}</textarea>
          ) : (
            <input type="text" inputmode={f.kind === "string" ? undefined : "numeric"} name={f.key} value={values[f.key]} aria-invalid={invalid} aria-describedby={describedBy} />
          )}
          {help}
          <FieldError errors={errors} name={f.key} />
        </label>
      );
    })}
  </>
);

/** One group's form: posts to `action`, swaps itself. */
export const SettingsGroupForm: FC<{ id: string; title: string; action: string; inputs: SettingInput[]; values: Record<string, string>; errors?: Record<string, string>; notice?: { kind: "ok" | "bad" | "warn"; text: string } }> = (p) => (
  <section class="card" id={p.id}>
    <h2>{p.title}</h2>
    {p.notice && <Notice kind={p.notice.kind} text={p.notice.text} />}
    <form class="stack" method="post" action={p.action} hx-post={p.action} hx-target={`#${p.id}`} hx-swap="outerHTML">
      <input type="hidden" name="group" value={p.id} />
      <SettingsFields inputs={p.inputs} values={p.values} errors={p.errors} />
      <div><button type="submit">Save {p.title.toLowerCase()}</button></div>
    </form>
  </section>
);

/** What can only be set at startup, shown read-only. */
const FROM: Record<ConfigSource, string> = { flag: "set by a flag", env: "set by the environment", settings: "from http_port/udp_port below", default: "the default" };

export const StartupCard: FC<{ config: StartupConfig; sources: Partial<Record<keyof StartupConfig, ConfigSource>> }> = ({ config, sources }) => {
  const fixed = (["port", "udpPort"] as const).filter((k) => sources[k] === "flag" || sources[k] === "env");
  return (
  <section class="card" id="startup">
    <h2>Running on</h2>
    <table class="small">
      <tbody>
        <tr><th>HTTP and websocket</th><td>{config.host}:{config.port}{sources.port && <div class="small muted">{FROM[sources.port]}</div>}</td><td class="muted">--host, --port (SWITCHYARD_HOST, SWITCHYARD_PORT), or http_port below</td></tr>
        <tr><th>UDP ingest</th><td>{config.udpPort === 0 ? "off" : `${config.udpHost}:${config.udpPort}`}{sources.udpPort && <div class="small muted">{FROM[sources.udpPort]}</div>}</td><td class="muted">--udp-port, --udp-host (SWITCHYARD_UDP_PORT), or udp_port below; more ports: udp_listeners, applied live</td></tr>
        <tr><th>Data dir</th><td><code>{config.dataDir}</code></td><td class="muted">--data-dir (SWITCHYARD_DATA_DIR)</td></tr>
      </tbody>
    </table>
    <p class="small muted">These are read when Switchyard starts. A flag or variable (systemd: <code>systemctl edit switchyard</code>) wins over the ports saved below; either way a restart applies them.</p>
    {fixed.length > 0 && (
      <Notice kind="warn" text={`${fixed.map((k) => (k === "port" ? "The HTTP port (SWITCHYARD_PORT or --port)" : "The UDP port (SWITCHYARD_UDP_PORT or --udp-port)")).join(" and ")} is set where Switchyard is started, which wins over ${fixed.map((k) => (k === "port" ? "http_port" : "udp_port")).join(" and ")} below: change it there (installed as a service: systemctl edit switchyard, or run install.sh again with --port), or remove it to use the setting.`} />
    )}
  </section>
  );
};

export const SettingsPage: FC<{ config: StartupConfig; sources: Partial<Record<keyof StartupConfig, ConfigSource>>; groups: { id: string; title: string; inputs: SettingInput[] }[]; values: Record<string, string>; tls?: TlsState | null; offloadCredentials?: S3Credentials["source"] | null }> = ({ config, sources, groups, values, tls, offloadCredentials }) => (
  <Layout title="Settings" active="settings">
    <h1>Settings</h1>
    <p class="muted small">Saved in the settings store and applied at once, except where a field says a restart is needed.</p>
    <StartupCard config={config} sources={sources} />
    <TlsCard tls={tls ?? null} />
    {groups.map((g) => <SettingsGroupForm id={g.id} title={g.title} action="/admin/settings" inputs={g.inputs} values={values} />)}
    <OffloadCredentialsForm source={offloadCredentials ?? null} />
  </Layout>
);
