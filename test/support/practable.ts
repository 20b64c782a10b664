/** practable's boot script, exactly as operators run it (from the compatibility notes), against `port`. */
export async function bootScript(port: number, env: Record<string, string>): Promise<{ posted: string; all: string; code: number }> {
  const script = [
    `curl -s -X POST -H "Content-Type: application/json" \\`,
    `  -d '{"stream":"spin30","destination":"'"\${spin30Access}"'","id":"0","token":"'"\${spin30Token}"'"}' \\`,
    `  http://localhost:8888/api/destinations`,
    `echo`,
    `curl -s -X GET http://localhost:8888/api/destinations/all`,
  ].join("\n").replaceAll("8888", String(port));
  const p = Bun.spawn(["sh", "-c", script], { env: { ...process.env, ...env }, stdout: "pipe" });
  const [posted = "", all = ""] = (await new Response(p.stdout).text()).trim().split("\n");
  return { posted, all, code: await p.exited };
}
