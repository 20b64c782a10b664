// A reverse proxy in its own process, as plain as nginx's bare `proxy_pass`: it
// passes method, path, headers and body to the upstream and adds no
// X-Forwarded-For, X-Real-IP or Forwarded. Usage: bun plain-proxy.ts UPSTREAM_PORT
const upstream = `http://127.0.0.1:${process.argv[2]}`;
const proxy = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    headers.delete("host");
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
    return fetch(upstream + url.pathname + url.search, { method: req.method, headers, body, redirect: "manual" });
  },
});
console.log(`listening ${proxy.port}`);
export {};
