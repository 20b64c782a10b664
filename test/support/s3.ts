import S3rver from "s3rver";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** s3rver's fixed credentials (it refuses any other key). */
export const S3RVER_KEYS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** A real S3-compatible server (s3rver) on loopback, with bucket `bucket`, that can be stopped and started again on the same port. */
export interface TestS3 {
  url: string;
  port: number;
  bucket: string;
  client: Bun.S3Client;
  /** Stops serving (requests are refused) until start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestS3(bucket = "logs"): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-s3-"));
  let server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  let up = true;
  const url = `http://127.0.0.1:${port}`;
  const client = new Bun.S3Client({ endpoint: url, bucket, region: "us-east-1", ...S3RVER_KEYS });
  return {
    url, port, bucket, client,
    async stop() {
      if (up) await server.close();
      up = false;
    },
    async start() {
      if (up) return;
      server = new S3rver({ port, address: "127.0.0.1", silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
      await server.run();
      up = true;
    },
    async close() {
      if (up) await server.close();
      up = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every key under `prefix` in the store, with sizes (all pages). */
export async function listKeys(client: Bun.S3Client, prefix: string): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  for (;;) {
    const page = await client.list({ prefix, ...(token ? { continuationToken: token } : {}) });
    for (const o of page.contents ?? []) out.push({ key: o.key, size: o.size ?? 0 });
    if (!page.isTruncated || !page.nextContinuationToken) break;
    token = page.nextContinuationToken;
  }
  return out.sort((a, b) => a.key.localeCompare(b.key));
}
