import pkg from "../package.json" with { type: "json" };

declare const SWITCHYARD_COMMIT: string | undefined;

/** Switchyard's version, from package.json. */
export const VERSION: string = pkg.version;

/** The git commit the binary was built from ("dev" when run from a checkout). */
export const COMMIT: string = typeof SWITCHYARD_COMMIT === "string" ? SWITCHYARD_COMMIT : "dev";
