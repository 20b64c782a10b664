/** One native file carried inside the compiled binary. */
export interface EmbeddedFile {
  name: string;
  /** Where the binary's embedded file system has it (from `import … with { type: "file" }`). */
  path: string;
  size: number;
  sha256: string;
}

/** DuckDB's native bindings for one platform, as embedded by `npm run build`. */
export interface EmbeddedNative {
  /** The npm package the files came from, e.g. `@duckdb/node-bindings-linux-arm64`. */
  package: string;
  version: string;
  /** `linux-x64` or `linux-arm64`. */
  platform: string;
  files: EmbeddedFile[];
}

/**
 * In a checkout this is null: DuckDB loads from node_modules. The build
 * (scripts/build.ts) replaces this module with the target platform's files.
 */
export const embedded: EmbeddedNative | null = null;
