import { BlockList, isIP } from "node:net";

/** How an address list is written, for error messages. */
export const ADDRESS_LIST_RULE = 'a list of IP addresses or CIDR ranges, e.g. ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]';

/** What is wrong with one entry of an address list (an IP or a CIDR range), or null. */
export function addressEntryProblem(entry: unknown): string | null {
  if (typeof entry !== "string") return `${JSON.stringify(entry)} is not an address; allowed: ${ADDRESS_LIST_RULE}`;
  const [ip, bits, extra] = entry.split("/");
  const family = isIP(ip ?? "");
  if (family === 0 || extra !== undefined) return `${JSON.stringify(entry)} is not an IP address or CIDR range; allowed: ${ADDRESS_LIST_RULE}`;
  if (bits !== undefined) {
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `${JSON.stringify(entry)}: the prefix length must be 0 to ${max}`;
  }
  return null;
}

/** What is wrong with an address list, or null. */
export function addressListProblem(value: unknown): string | null {
  if (!Array.isArray(value)) return `allowed: ${ADDRESS_LIST_RULE}`;
  if (value.length > 1000) return "at most 1000 entries";
  return value.map(addressEntryProblem).find((p) => p !== null) ?? null;
}

/**
 * A test for "is this address in the list" (IPv4-mapped IPv6 addresses such as
 * ::ffff:10.0.0.1 match IPv4 entries). Entries must have passed addressListProblem.
 * An empty list matches nothing.
 */
export function addressMatcher(list: readonly string[]): (address: string) => boolean {
  if (list.length === 0) return () => false;
  const blocks = new BlockList();
  for (const entry of list) {
    const [ip, bits] = entry.split("/") as [string, string | undefined];
    const type = isIP(ip) === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) blocks.addAddress(ip, type);
    else blocks.addSubnet(ip, Number(bits), type);
  }
  const seen = new Map<string, boolean>();
  return (address) => {
    let hit = seen.get(address);
    if (hit === undefined) {
      const family = isIP(address);
      hit = family !== 0 && blocks.check(address, family === 4 ? "ipv4" : "ipv6");
      // Bounded memo: senders are few in practice, but an address space is not.
      if (seen.size >= 4096) seen.clear();
      seen.set(address, hit);
    }
    return hit;
  };
}
