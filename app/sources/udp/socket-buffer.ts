import { FFIType, ptr } from "bun:ffi";
import { libcFunctions } from "../../core/libc.ts";

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;

const lib = libcFunctions({
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
});

/** What setting a socket's receive buffer came to. */
export interface ReceiveBufferResult {
  /** The size the kernel reports now (Linux doubles what was asked, for its own bookkeeping). */
  effective: number;
  /** True when SO_RCVBUFFORCE went past net.core.rmem_max (needs CAP_NET_ADMIN). */
  forced: boolean;
}

/**
 * Asks the kernel for a receive buffer of `bytes` on socket `fd` (SO_RCVBUF, or
 * SO_RCVBUFFORCE where the process may), so bursts of datagrams wait in the
 * kernel instead of being dropped. Bun.udpSocket has no option for this, so it
 * calls libc's setsockopt through bun:ffi. Returns null where that is not
 * possible (no glibc), and the caller carries on with the default.
 */
export function setReceiveBuffer(fd: number, bytes: number): ReceiveBufferResult | null {
  const libc = lib();
  if (!libc) return null;
  const value = new Int32Array([bytes]);
  const forced = libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, ptr(value), 4) === 0;
  if (!forced && libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(value), 4) !== 0) return null;
  return { effective: receiveBuffer(fd) ?? 0, forced };
}

/** The receive buffer size the kernel reports for `fd`, or null. */
export function receiveBuffer(fd: number): number | null {
  const libc = lib();
  if (!libc) return null;
  const out = new Int32Array(1);
  const len = new Uint32Array([4]);
  return libc.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(out), ptr(len)) === 0 ? out[0]! : null;
}
