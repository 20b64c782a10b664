import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileSums, PART_BYTES, uploadFile } from "../app/log/s3-store.ts";
import { startTestS3, type TestS3 } from "./support/s3.ts";
import { tempDir } from "./support/server.ts";

let s3: TestS3;
beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3.close();
});

/** S3's multipart ETag: the MD5 of the parts' MD5s, then the count. */
function multipartEtag(bytes: Uint8Array, partBytes: number): string {
  const sums: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += partBytes) sums.push(createHash("md5").update(bytes.subarray(at, at + partBytes)).digest());
  return `${createHash("md5").update(Buffer.concat(sums)).digest("hex")}-${sums.length}`;
}

describe("uploadFile and fileSums", () => {
  it.each([["an empty file", 0], ["one short part", 3 * 1024 * 1024 + 17], ["exactly two parts", 2 * PART_BYTES], ["three parts, the last one short", 2 * PART_BYTES + 1234]])("agree with each other and with the bytes, and the object reads back whole (%s)", async (_name, size) => {
    const dir = tempDir();
    try {
      const bytes = randomBytes(size);
      const path = join(dir.dir, "f.parquet");
      writeFileSync(path, bytes);
      const sent = await uploadFile(s3.client, `t/${size}.parquet`, path);
      const local = await fileSums(path);
      expect(sent).toEqual(local);
      expect(local.size).toBe(size);
      expect(local.md5).toBe(createHash("md5").update(bytes).digest("hex"));
      expect(local.multipartEtag).toBe(size === 0 ? `${createHash("md5").update(createHash("md5").update(bytes).digest()).digest("hex")}-1` : multipartEtag(bytes, PART_BYTES));
      const back = new Uint8Array(await s3.client.file(`t/${size}.parquet`).arrayBuffer());
      expect(back.length).toBe(size);
      expect(Buffer.compare(Buffer.from(back), bytes)).toBe(0);
    } finally {
      dir.remove();
    }
  });
});
