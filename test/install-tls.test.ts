import { afterAll, describe, expect, it, setDefaultTimeout } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { distBinary, type Platform } from "./binary-support.ts";

// install.sh runs the binary (version) and creates a user in a throwaway root.
setDefaultTimeout(120_000);

const INSTALL = join(import.meta.dir, "..", "install.sh");
const NATIVE: Platform = process.arch === "arm64" ? "linux-arm64" : "linux-x64";
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function newRoot(): string {
  const r = mkdtempSync(join(tmpdir(), "switchyard-root-tls-"));
  roots.push(r);
  return r;
}

/** `sh install.sh ARGS` for an image (--root, no SYSTEMCTL): the unit is written and enabled, nothing started. */
function install(args: string[]) {
  const r = Bun.spawnSync(["sh", INSTALL, ...args], { env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/root" }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("install.sh --domain --email", () => {
  const cases: [string, string[], RegExp][] = [
    ["a wildcard", ["--domain", "*.example.org"], /--domain "\*\.example\.org" is not a domain name/],
    ["a name without a dot", ["--domain", "relay"], /is not a public domain name/],
    ["--email without --domain", ["--email", "ops@example.org"], /--email goes with --domain/],
    ["two addresses", ["--domain", "relay.example.org", "--email", "a@example.org,b@example.org"], /is not one email address/],
    ["not an address", ["--domain", "relay.example.org", "--email", "ops"], /is not an email address/],
  ];
  for (const [name, args, error] of cases) {
    it(`refuses ${name} before changing anything`, () => {
      const root = newRoot();
      const r = install(["--root", root, "--binary", "/nonexistent", ...args]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(error);
      expect(existsSync(join(root, "etc/systemd/system/switchyard.service"))).toBe(false);
    });
  }

  it("sets the service up for ACME on 443 and 80 as the switchyard user with CAP_NET_BIND_SERVICE only", () => {
    const bin = distBinary(NATIVE);
    if ("missing" in bin) {
      if (bin.fail) throw new Error(bin.missing);
      return;
    }
    const root = newRoot();
    const r = install(["--root", root, "--binary", bin.path, "--domain", "relay.example.org,lab.example.org", "--email", "ops@example.org"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("open ports 80 and 443 in the firewall");
    const unit = readFileSync(join(root, "etc/systemd/system/switchyard.service"), "utf8");
    expect(unit).toContain("Environment=SWITCHYARD_PORT=443");
    expect(unit).toContain("User=switchyard");
    expect(unit).toContain("NoNewPrivileges=yes");
    const dropin = readFileSync(join(root, "etc/systemd/system/switchyard.service.d/10-tls.conf"), "utf8");
    for (const line of ["Environment=SWITCHYARD_ACME_DOMAIN=relay.example.org,lab.example.org", "Environment=SWITCHYARD_ACME_EMAIL=ops@example.org", "Environment=SWITCHYARD_REDIRECT_PORT=80", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"]) {
      expect(dropin).toContain(line);
    }
    expect(dropin).not.toMatch(/^User=root/m);
    // The service's own flags parse what the drop-in sets.
    const check = Bun.spawnSync([bin.path, "check-config", "--data-dir", join(root, "check")], {
      env: { PATH: "/usr/bin:/bin", HOME: root, SWITCHYARD_PORT: "443", SWITCHYARD_ACME_DOMAIN: "relay.example.org,lab.example.org", SWITCHYARD_ACME_EMAIL: "ops@example.org", SWITCHYARD_REDIRECT_PORT: "80" },
      stdout: "pipe", stderr: "pipe",
    });
    expect(check.stderr.toString()).not.toContain("unknown environment variable");
    expect(check.exitCode).toBe(0);
    // An upgrade without --domain keeps HTTPS; --uninstall removes the drop-in with the unit.
    expect(install(["--root", root, "--binary", bin.path]).code).toBe(0);
    expect(existsSync(join(root, "etc/systemd/system/switchyard.service.d/10-tls.conf"))).toBe(true);
    expect(readFileSync(join(root, "etc/systemd/system/switchyard.service"), "utf8")).toContain("Environment=SWITCHYARD_PORT=443");
    expect(install(["--root", root, "--uninstall"]).code).toBe(0);
    expect(existsSync(join(root, "etc/systemd/system/switchyard.service.d/10-tls.conf"))).toBe(false);
  });
});
