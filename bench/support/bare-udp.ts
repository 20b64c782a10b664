/**
 * The baseline for the UDP benchmark: a bare Bun.udpSocket receiver that only
 * counts datagrams. Prints "UDP_PORT HTTP_PORT"; GET / on the HTTP port answers
 * the count so far.
 */
let count = 0;
const udp = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data() { count++; } } });
const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(String(count)) });
console.log(`${udp.port} ${http.port}`);
export {};
