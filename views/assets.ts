import { readFileSync } from "node:fs";
import htmx from "htmx.org/dist/htmx.min.js" with { type: "file" };
import sse from "htmx-ext-sse/dist/sse.min.js" with { type: "file" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "file" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "file" };
import adminCss from "./assets/admin.css" with { type: "file" };
import adminJs from "./assets/admin.client.js" with { type: "file" };

/** The admin UI's static files, by the name they are served under /admin/assets/. */
export const ASSETS: Record<string, { path: string; type: string }> = {
  "htmx.min.js": { path: htmx, type: "text/javascript; charset=utf-8" },
  "sse.min.js": { path: sse, type: "text/javascript; charset=utf-8" },
  "uPlot.iife.min.js": { path: uplotJs, type: "text/javascript; charset=utf-8" },
  "uPlot.min.css": { path: uplotCss, type: "text/css; charset=utf-8" },
  "admin.css": { path: adminCss, type: "text/css; charset=utf-8" },
  "admin.js": { path: adminJs, type: "text/javascript; charset=utf-8" },
};

/** A digest of every asset: URLs carry it, so browsers may cache the files for good. */
export const ASSET_VERSION: string = Bun.hash(Object.values(ASSETS).map((a) => readFileSync(a.path, "utf8")).join("\0")).toString(36);
