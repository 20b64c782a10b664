/**
 * s3rver (the S3-compatible server the offload tests use) in a process of its
 * own, for benchmarks: its CPU is not the uploader's. Prints its port, then
 * serves bucket "logs" from the folder given as the argument until killed.
 */
import S3rver from "s3rver";

const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: process.argv[2]!, configureBuckets: [{ name: "logs" }] });
const { port } = await server.run();
console.log(`port=${port}`);
