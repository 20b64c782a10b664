/** The binary benchmark's baseline: a bare Bun.serve answering /healthz on the port in argv[2], compiled like Switchyard. */
Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2]),
  fetch: (req) => (new URL(req.url).pathname === "/healthz" ? Response.json({ status: "ok" }) : new Response("not found", { status: 404 })),
});
