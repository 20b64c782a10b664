import { hasEmbeddedNative, prepareNative } from "./load.ts";

/** DuckDB's version as the loaded library reports it, or why it could not be loaded. */
export type DuckDBVersion = { duckdb: string; duckdb_source: string } | { duckdb: null; duckdb_error: string };

/** Loads DuckDB (unpacking it in the compiled binary) and asks it for its version. */
export async function duckdbVersion(): Promise<DuckDBVersion> {
  try {
    const dir = prepareNative("stamp")?.dir;
    const { version } = await import("@duckdb/node-api");
    return { duckdb: version(), duckdb_source: hasEmbeddedNative() ? `embedded, unpacked in ${dir}` : "node_modules" };
  } catch (err) {
    return { duckdb: null, duckdb_error: (err as Error).message };
  }
}
