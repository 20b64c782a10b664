import { join } from "node:path";
import { writeFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { freeTcpPort, freeUdpPort, waitFor } from "./server.ts";

/** Runs openssl with `args` in `cwd`; throws with its stderr when it fails. */
export function openssl(cwd: string, ...args: string[]): string {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** A CA made with openssl: its certificate file and key file. */
export interface TestCa {
  cert: string;
  key: string;
}

/** Makes a self-signed CA (EC P-256) named `name` in `dir`. */
export function makeCa(dir: string, name: string): TestCa {
  const cert = join(dir, `${name}-ca.crt`);
  const key = join(dir, `${name}-ca.key`);
  openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "30",
    "-subj", `/CN=${name} test CA`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  return { cert, key };
}

/** Options of a leaf certificate. */
export interface LeafOptions {
  /** DNS names and IPs (IP:…) for subjectAltName; default localhost and 127.0.0.1. */
  names?: string[];
  /** openssl -not_before / -not_after (YYYYMMDDHHMMSSZ); default now to 30 days. */
  notBefore?: string;
  notAfter?: string;
  /** An intermediate CA signs it (the chain file then holds leaf + intermediate). */
  intermediate?: TestCa;
}

/** Makes a leaf key and certificate signed by `ca`; the cert file holds the chain (leaf first). Returns the file paths. */
export function makeLeaf(dir: string, name: string, ca: TestCa, opts: LeafOptions = {}): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const leaf = join(dir, `${name}.leaf.crt`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  const names = opts.names ?? ["localhost", "IP:127.0.0.1"];
  writeFileSync(ext, `subjectAltName=${names.map((n) => (n.startsWith("IP:") ? n : `DNS:${n}`)).join(",")}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  openssl(dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`);
  const signer = opts.intermediate ?? ca;
  if (opts.notBefore || opts.notAfter) signWithDates(dir, name, signer, csr, ext, leaf, opts.notBefore ?? "20200101000000Z", opts.notAfter ?? "20991231000000Z");
  else openssl(dir, "x509", "-req", "-in", csr, "-CA", signer.cert, "-CAkey", signer.key, "-CAcreateserial", "-out", leaf, "-extfile", ext, "-days", "30");
  const chain = Bun.spawnSync(["cat", leaf, ...(opts.intermediate ? [opts.intermediate.cert] : [])]).stdout.toString();
  writeFileSync(cert, chain);
  return { cert, key };
}

/** `openssl ca` with explicit start and end dates (OpenSSL 3.0's x509 command has no -not_before). */
function signWithDates(dir: string, name: string, ca: TestCa, csr: string, ext: string, out: string, start: string, end: string): void {
  const db = join(dir, `${name}-db`);
  Bun.spawnSync(["mkdir", "-p", db]);
  writeFileSync(join(db, "index.txt"), "");
  writeFileSync(join(db, "serial"), "1000\n");
  const cnf = join(db, "ca.cnf");
  writeFileSync(cnf, `[ca]\ndefault_ca=d\n[d]\ndatabase=${db}/index.txt\nnew_certs_dir=${db}\nserial=${db}/serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=none\n[p]\ncommonName=supplied\n`);
  openssl(dir, "ca", "-batch", "-notext", "-config", cnf, "-cert", ca.cert, "-keyfile", ca.key, "-in", csr, "-out", out, "-startdate", start, "-enddate", end, "-extfile", ext);
}

/** Makes an intermediate CA signed by `ca`. */
export function makeIntermediate(dir: string, name: string, ca: TestCa): TestCa {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
  openssl(dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`);
  openssl(dir, "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-extfile", ext, "-days", "30");
  return { cert, key };
}

/** `openssl s_client` against 127.0.0.1:`port` with `servername`, verifying against `caFile`. Returns its exit code and output. */
export async function sClient(port: number, caFile: string, servername = "localhost"): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", servername, "-CAfile", caFile, "-verify_return_error", "-verify_hostname", servername, "-showcerts"],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

/** The subject CN of the certificate a TLS server on 127.0.0.1:`port` presents. */
export async function servedSubject(port: number, servername = "localhost"): Promise<string> {
  const p = Bun.spawn(["sh", "-c", `openssl s_client -connect 127.0.0.1:${port} -servername ${servername} </dev/null 2>/dev/null | openssl x509 -noout -subject -enddate 2>/dev/null`], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.trim();
}

/** A running pebble (ACME test CA) and pebble-challtestsrv (its DNS), on loopback. */
export interface Pebble {
  directory: string;
  /** The CA file that pebble's own HTTPS listener is signed by (for --acme-ca-file). */
  listenerCa: string;
  /** Pebble's issuing root (PEM), which clients of the issued certificates must trust. */
  root(): Promise<string>;
  /** Points `host` at `addresses` in pebble's DNS. */
  setAddress(host: string, addresses: string[]): Promise<void>;
  /** Back to the default answer (127.0.0.1) for `host`. */
  clearAddress(host: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts pebble with HTTP-01 validation aimed at `httpPort` (Switchyard's --redirect-port) and
 * DNS from pebble-challtestsrv, which answers 127.0.0.1 for every name.
 */
export async function startPebble(dir: string, opts: { httpPort: number; validitySeconds?: number }): Promise<Pebble> {
  const ca = makeCa(dir, "pebble-listener");
  const listener = makeLeaf(dir, "pebble-listener", ca, { names: ["localhost", "IP:127.0.0.1"] });
  const acmePort = freeTcpPort();
  const mgmtPort = freeTcpPort();
  const dnsPort = await freeUdpPort();
  const challMgmt = freeTcpPort();
  const config = join(dir, "pebble.json");
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: listener.cert, privateKey: listener.key, httpPort: opts.httpPort, tlsPort: freeTcpPort(),
      ocspResponderURL: "", externalAccountBindingRequired: false,
      ...(opts.validitySeconds ? { certificateValidityPeriod: opts.validitySeconds } : {}),
    },
  }));
  const procs: Subprocess[] = [];
  const logs: string[] = [];
  const collect = async (s: ReadableStream<Uint8Array>) => { for await (const c of s) logs.push(new TextDecoder().decode(c)); };
  const chall = Bun.spawn(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${challMgmt}`],
    { stdout: "pipe", stderr: "pipe" });
  procs.push(chall);
  void collect(chall.stdout); void collect(chall.stderr);
  const pebble = Bun.spawn(["pebble", "-config", config, "-dnsserver", `127.0.0.1:${dnsPort}`], { stdout: "pipe", stderr: "pipe", env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" } });
  procs.push(pebble);
  void collect(pebble.stdout); void collect(pebble.stderr);
  const stop = async () => {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
  };
  const tlsOpts = { tls: { ca: await Bun.file(ca.cert).text() } };
  try {
    await waitFor(async () => {
      try {
        return (await fetch(`https://127.0.0.1:${acmePort}/dir`, tlsOpts)).ok;
      } catch {
        return false;
      }
    }, `pebble to answer (logs: ${logs.join("")})`, 20_000);
    await waitFor(async () => {
      try {
        return (await fetch(`http://127.0.0.1:${challMgmt}/clear-a`, { method: "POST", body: JSON.stringify({ host: "nothing.test" }) })).ok;
      } catch {
        return false;
      }
    }, "pebble-challtestsrv to answer", 20_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    directory: `https://127.0.0.1:${acmePort}/dir`,
    listenerCa: ca.cert,
    root: async () => (await fetch(`https://127.0.0.1:${mgmtPort}/roots/0`, tlsOpts)).text(),
    async setAddress(host, addresses) {
      const r = await fetch(`http://127.0.0.1:${challMgmt}/add-a`, { method: "POST", body: JSON.stringify({ host, addresses }) });
      if (!r.ok) throw new Error(`challtestsrv add-a answered ${r.status}`);
    },
    async clearAddress(host) {
      const r = await fetch(`http://127.0.0.1:${challMgmt}/clear-a`, { method: "POST", body: JSON.stringify({ host }) });
      if (!r.ok) throw new Error(`challtestsrv clear-a answered ${r.status}`);
    },
    stop,
  };
}
