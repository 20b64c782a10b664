import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TestServer } from "./server.ts";

/** The first admin password a server wrote to its data dir. */
export function firstPassword(dataDir: string): string {
  return readFileSync(join(dataDir, "initial-admin-password"), "utf8").trim();
}

/** A same-origin form POST as a browser sends it (Origin of the app.request base, http://localhost). */
export function formPost(fields: Record<string, string | string[]>, headers: Record<string, string> = {}): RequestInit {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const x of Array.isArray(v) ? v : [v]) body.append(k, x);
  return { method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: "http://localhost", ...headers } };
}

/** Signs in through POST /admin/login (app.request) and returns the session cookie ("name=value"). */
export async function signIn(s: TestServer, password = firstPassword(s.dataDir)): Promise<string> {
  const r = await s.app.request("/admin/login", formPost({ password, next: "/admin" }));
  if (r.status !== 303) throw new Error(`sign-in answered ${r.status}: ${await r.text()}`);
  return r.headers.get("set-cookie")!.split(";")[0]!;
}

/** app.request with the session cookie (and, for POSTs, the same-origin headers of formPost). */
export function asAdmin(s: TestServer, cookie: string) {
  return {
    get: (path: string, headers: Record<string, string> = {}) => s.app.request(path, { headers: { cookie, ...headers } }),
    post: (path: string, fields: Record<string, string | string[]>, headers: Record<string, string> = {}) => {
      const init = formPost(fields, headers);
      return s.app.request(path, { ...init, headers: { ...(init.headers as Record<string, string>), cookie } });
    },
  };
}

/** Reads an SSE response until `want` has appeared (or `ms` pass), then cancels it; returns the text read. */
export async function readEvents(res: Response, want: RegExp, ms = 5000): Promise<string> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  while (!want.test(text) && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(1, deadline - Date.now())).then(() => null)]);
    if (!chunk || chunk.done) break;
    text += dec.decode(chunk.value);
  }
  await reader.cancel();
  return text;
}
