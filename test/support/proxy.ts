import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freeTcpPort, tempDir, waitFor } from "./server.ts";

/** A reverse proxy process in front of a server: its URL and a way to stop it. */
export interface Proxy {
  name: string;
  url: string;
  stop(): Promise<void>;
}

/** True when Debian's nginx is installed (apt-get install nginx-light). */
export function haveNginx(): boolean {
  return Bun.which("nginx") !== null || Bun.which("nginx", { PATH: "/usr/sbin:/usr/local/sbin" }) !== null;
}

/**
 * Debian's nginx in front of 127.0.0.1:`upstream`, with a plain `proxy_pass` (no
 * forwarding headers: what makes every client look local) or, with `forward`,
 * the usual X-Forwarded-For / X-Real-IP lines.
 */
export async function startNginx(upstream: number, forward = false): Promise<Proxy> {
  const tmp = tempDir("switchyard-nginx-");
  const port = freeTcpPort();
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(tmp.dir, d));
  const headers = forward ? "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Real-IP $remote_addr;" : "";
  writeFileSync(join(tmp.dir, "nginx.conf"), `
daemon off; master_process off; worker_processes 1;
pid ${tmp.dir}/nginx.pid; error_log ${tmp.dir}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${tmp.dir}/body; proxy_temp_path ${tmp.dir}/proxy; fastcgi_temp_path ${tmp.dir}/fastcgi;
  uwsgi_temp_path ${tmp.dir}/uwsgi; scgi_temp_path ${tmp.dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://127.0.0.1:${upstream}; ${headers} }
  }
}
`);
  const nginx = Bun.which("nginx") ?? "/usr/sbin/nginx";
  const p = Bun.spawn([nginx, "-p", tmp.dir, "-e", join(tmp.dir, "error.log"), "-c", join(tmp.dir, "nginx.conf")], { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (p.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(join(tmp.dir, "error.log"), "utf8")}`);
    return (await fetch(`${url}/healthz`).catch(() => null))?.status === 200;
  }, "nginx to answer", 10_000);
  return {
    name: forward ? "nginx (X-Forwarded-For)" : "nginx (plain proxy_pass)", url,
    async stop() {
      p.kill();
      await p.exited;
      tmp.remove();
    },
  };
}

/** A Bun reverse proxy in its own process that, like plain proxy_pass, adds no forwarding headers. */
export async function startPlainBunProxy(upstream: number): Promise<Proxy> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "plain-proxy.ts"), String(upstream)], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const reader = p.stdout.getReader();
  let out = "";
  while (!/listening \d+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the proxy exited before it listened: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    name: "bun proxy (no forwarding headers)", url: `http://127.0.0.1:${/listening (\d+)/.exec(out)![1]}`,
    async stop() {
      p.kill();
      await p.exited;
    },
  };
}
