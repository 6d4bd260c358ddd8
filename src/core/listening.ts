import { readFile } from 'node:fs/promises';
import { bindOverlaps, linesInState, parseProcNet, TCP_LISTEN } from '../agent/procnet.js';

/**
 * Whether a guest listens on a TCP port, seen from the host in its network namespace's socket tables
 * (/proc/<pid>/net/tcp{,6} of a process in the guest). Unlike a test connection, looking costs the guest
 * nothing: sshd starts a whole new sshd for every connection, even one that is closed at once, and that
 * while the guest is still booting and the first login is on its way.
 */

/** Pure: whether the LISTEN lines of a socket table take connections to address:port. */
export function listensOn(listenLines: string, address: string, port: number): boolean {
  return parseProcNet(listenLines, 'tcp').some((e) => e.state === TCP_LISTEN && e.port === port && bindOverlaps(e.ip, address));
}

/** undefined when the tables can't be read (the process is gone, or not ours to look at). */
export async function guestListens(pid: number, address: string, port: number): Promise<boolean | undefined> {
  const tables = await Promise.all(['tcp', 'tcp6'].map((t) => readFile(`/proc/${pid}/net/${t}`).catch(() => undefined)));
  if (tables.every((t) => t === undefined)) return undefined;
  const lines = tables.flatMap((t) => (t ? linesInState(t, TCP_LISTEN) : []));
  return listensOn(lines.join('\n'), address, port);
}
