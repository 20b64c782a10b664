import { dlopen, type FFIFunction, type Library } from "bun:ffi";

/**
 * Functions of the C library (bun:ffi), opened on the first call of the
 * returned getter and kept; null where it cannot be opened (no glibc), and the
 * caller goes on without them.
 */
export function libcFunctions<Fns extends Record<string, FFIFunction>>(symbols: Fns): () => Library<Fns>["symbols"] | null {
  let opened: Library<Fns>["symbols"] | null | undefined;
  return () => {
    if (opened === undefined) {
      try {
        opened = dlopen("libc.so.6", symbols).symbols;
      } catch {
        opened = null;
      }
    }
    return opened;
  };
}
