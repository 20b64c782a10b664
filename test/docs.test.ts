import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

// docs/ARCHITECTURE.md is what a newcomer reads first: every part it names must exist,
// and every folder of the program must be in its table of parts.

const ROOT = join(import.meta.dir, "..");
const DOC = readFileSync(join(ROOT, "docs/ARCHITECTURE.md"), "utf8");
const TOP = ["app/", "views/", "native/", "scripts/", "test/", "bench/", "docs/"];
const FILE = /^[\w.+-]+(\/[\w.+-]+)*(\.(ts|tsx|cjs|js|sh|css|md)|\/)$/;

/** The rows of the "Parts" table: the folder in the first column, and the rest of the row. */
function partsRows(): { folder: string; text: string }[] {
  const section = DOC.slice(DOC.indexOf("## Parts"), DOC.indexOf("\n## ", DOC.indexOf("## Parts") + 1));
  return section.split("\n").filter((l) => /^\| `[^`]+` \|/.test(l)).map((l) => ({ folder: l.match(/^\| `([^`]+)`/)![1]!, text: l }));
}

/** Backticked names that look like files or folders of the repository (not DATA_DIR/… places at run time). */
function named(text: string): string[] {
  return [...text.matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!).filter((n) => FILE.test(n) && !/^[A-Z_]+\//.test(n));
}

describe("docs/ARCHITECTURE.md matches the tree", () => {
  it("every file or folder the table of parts names exists, in the row's folder or from the top", () => {
    const missing: string[] = [];
    let checked = 0;
    for (const { folder, text } of partsRows()) {
      const base = folder.endsWith("/") ? folder : "";
      for (const n of named(text)) {
        checked++;
        if (!existsSync(join(ROOT, base, n)) && !existsSync(join(ROOT, n))) missing.push(`${n} (row ${folder})`);
      }
    }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThan(50); // the table was read, not skipped
  });

  it("every path from the top named in it, the README or any of docs/ exists", () => {
    const docs = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
    const missing = docs.flatMap((f) => named(readFileSync(join(ROOT, f), "utf8")).filter((n) => TOP.some((t) => n.startsWith(t)) && !existsSync(join(ROOT, n))).map((n) => `${f}: ${n}`));
    expect(missing).toEqual([]);
  });

  it("every folder under app/ has its row in the table of parts", () => {
    const rows = new Set(partsRows().map((r) => r.folder));
    const folders = readdirSync(join(ROOT, "app"), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `app/${d.name}/`);
    expect(folders.filter((f) => !rows.has(f))).toEqual([]);
  });

  it("names every file of the hub, which holds only the registry, publish, fan-out and backpressure", () => {
    const row = partsRows().find((r) => r.folder === "app/hub/")!;
    const files = readdirSync(join(ROOT, "app/hub"));
    expect(files.filter((f) => !named(row.text).includes(f))).toEqual([]);
  });
});

/** GitHub's anchor for a heading. */
const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\w\- ]/g, "").replaceAll(" ", "-");

/** The anchors of a Markdown file: its headings outside code blocks. */
function anchors(file: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of readFileSync(join(ROOT, file), "utf8").split("\n")) {
    if (line.startsWith("```")) fence = !fence;
    const m = !fence && line.match(/^#{1,6} (.*)/);
    if (m) out.add(slug(m[1]!));
  }
  return out;
}

describe("README and docs/ link to what exists", () => {
  const files = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

  it("every relative link names a file that exists, and a heading that exists in it", () => {
    const broken: string[] = [];
    let links = 0;
    for (const file of files) {
      for (const m of readFileSync(join(ROOT, file), "utf8").matchAll(/\]\(([^)\s]+)\)/g)) {
        const url = m[1]!;
        if (/^[a-z]+:/.test(url)) continue;
        links++;
        const [path, frag] = url.split("#") as [string, string | undefined];
        const target = path ? normalize(join(dirname(file), path)) : file;
        if (!existsSync(join(ROOT, target))) broken.push(`${file}: ${url}`);
        else if (frag && target.endsWith(".md") && !anchors(target).has(frag)) broken.push(`${file}: ${url} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
    expect(links).toBeGreaterThan(50);
  });

  it("the README stays a front page (the reference lives in docs/)", () => {
    expect(readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length).toBeLessThanOrEqual(160);
  });
});
