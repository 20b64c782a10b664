/**
 * The baseline for the hub benchmark: a bare Bun.serve pub/sub server doing the
 * same fan-out (every other client of the topic, native topics), with nothing else.
 * Prints its port on stdout.
 */
const server = Bun.serve<{ topic: string }>({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req, srv) {
    const topic = new URL(req.url).pathname.slice(4);
    if (srv.upgrade(req, { data: { topic } })) return;
    return new Response("websocket only", { status: 400 });
  },
  websocket: {
    open(ws) { ws.subscribe(ws.data.topic); },
    message(ws, msg) { ws.publish(ws.data.topic, msg); },
  },
});
console.log(server.port);
