/** A websocket test client that records what it receives and how it closed. */
export interface TestClient {
  ws: WebSocket;
  messages: (string | Uint8Array)[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves when `n` messages have arrived (or rejects after `ms`). */
  received(n: number, ms?: number): Promise<(string | Uint8Array)[]>;
  close(): void;
}

/** Opens a websocket and waits for it to open or close; never throws on refusal (see `closed`). */
export async function connect(url: string, protocols?: string | string[], headers?: Record<string, string>, tls?: { ca?: string | string[]; rejectUnauthorized?: boolean }): Promise<TestClient> {
  const ws = new WebSocket(url, { protocols, headers, tls } as unknown as string[]);
  ws.binaryType = "arraybuffer";
  const messages: (string | Uint8Array)[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  ws.onmessage = (e) => {
    messages.push(typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer));
    for (const w of [...waiters]) if (messages.length >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  };
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.onclose = (e) => resolve({ code: e.code, reason: e.reason });
  });
  await Promise.race([new Promise((r) => (ws.onopen = r)), closed]);
  return {
    ws, messages, closed,
    async received(n, ms = 10_000) {
      if (messages.length < n) {
        await Promise.race([
          new Promise<void>((resolve) => waiters.push({ n, resolve })),
          Bun.sleep(ms).then(() => { throw new Error(`expected ${n} messages, got ${messages.length}`); }),
        ]);
      }
      return messages;
    },
    close: () => ws.close(),
  };
}

/** Publishes on a websocket of `url`'s server and reads it back on another: the hub's live path works. */
export async function liveTraffic(url: string, stream: string): Promise<void> {
  const ws = url.replace("http", "ws");
  const sub = new WebSocket(`${ws}/ws/${stream}`);
  const pub = new WebSocket(`${ws}/ws/${stream}`);
  await Promise.all([sub, pub].map((s) => new Promise((res, rej) => { s.onopen = res; s.onerror = rej; })));
  const got = new Promise<string>((res) => { sub.onmessage = (e) => res(String(e.data)); });
  pub.send(`hello ${stream}`);
  const heard = await got;
  sub.close();
  pub.close();
  if (heard !== `hello ${stream}`) throw new Error(`the live path gave ${JSON.stringify(heard)}, not ${JSON.stringify(`hello ${stream}`)}`);
}
