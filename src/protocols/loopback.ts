// Whether a peer address is this machine (IPv4 127/8, ::1, IPv4-mapped 127/8): listeners accept a
// token over plaintext only from such a peer unless configured otherwise.

export function isLoopback(addr: string | undefined): boolean {
  return !!addr && (addr === "::1" || addr.startsWith("127.") || addr.startsWith("::ffff:127."));
}
