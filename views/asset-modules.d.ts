// Files imported `with { type: "file" }`: the import is the file's path (embedded in the compiled binary).
declare module "htmx.org/dist/htmx.min.js" { const path: string; export default path; }
declare module "htmx-ext-sse/dist/sse.min.js" { const path: string; export default path; }
declare module "uplot/dist/uPlot.iife.min.js" { const path: string; export default path; }
declare module "uplot/dist/uPlot.min.css" { const path: string; export default path; }
declare module "*.css" { const path: string; export default path; }
declare module "*/admin.client.js" { const path: string; export default path; }
