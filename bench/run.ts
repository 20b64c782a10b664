/**
 * Runs one benchmark by name: `npm run bench -- hub` (or `bun bench/run.ts hub`).
 * Each benchmark runs its own baseline in the same run and prints the ratio.
 */
const BENCHES: Record<string, string> = {
  hub: "./hub.ts",
  udp: "./udp.ts",
  relay: "./relay.ts",
  log: "./log.ts",
  replay: "./replay.ts",
  admin: "./admin.ts",
  binary: "./binary.ts",
  soak: "./soak.ts",
  idle: "./idle.ts",
  acks: "./publish-acks.ts",
  resume: "./relay-resume.ts",
  cluster: "./cluster.ts",
  offload: "./offload.ts",
  compaction: "./compaction.ts",
  answer: "./answer.ts",
};

const name = process.argv[2];
if (!name || !BENCHES[name]) {
  console.error(`usage: npm run bench -- NAME [options]; benchmarks: ${Object.keys(BENCHES).join(", ")}`);
  process.exit(2);
}
const bench = (await import(BENCHES[name]!)) as { run(args: string[]): Promise<void> };
await bench.run(process.argv.slice(3));
process.exit(0);
export {};
