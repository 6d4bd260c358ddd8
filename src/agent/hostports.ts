/**
 * Who listens on the host: the kernel's socket tables, and which process holds a socket (its inode
 * among some process's /proc/<pid>/fd links). Processes of other users can't be looked into without
 * root; their sockets still show, only without a holder.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { linesInState, listening, parseProcNet, TCP_LISTEN, UDP_UNCONNECTED, type SocketEntry } from './procnet.js';

export interface SocketHolder {
  pid: number;
  /** The program's name (/proc/<pid>/comm). */
  name: string;
}

/** Every listening TCP socket and bound UDP socket in this network namespace. */
export async function hostListeners(): Promise<SocketEntry[]> {
  // A busy host's TCP table is mostly connections and TIME_WAIT: only the lines in a listening state are parsed.
  const read = (file: string, state: number) =>
    readFile(file).then((table) => linesInState(table, state).join('\n'), () => '');
  const [tcp, tcp6, udp, udp6] = await Promise.all([
    read('/proc/net/tcp', TCP_LISTEN),
    read('/proc/net/tcp6', TCP_LISTEN),
    read('/proc/net/udp', UDP_UNCONNECTED),
    read('/proc/net/udp6', UDP_UNCONNECTED),
  ]);
  return listening([...parseProcNet(`${tcp}\n${tcp6}`, 'tcp'), ...parseProcNet(`${udp}\n${udp6}`, 'udp')]);
}

/** Socket inodes a process has open (empty when it is gone or not ours to look at). */
export async function socketInodes(pid: number): Promise<Set<number>> {
  const out = new Set<number>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  await Promise.all(
    fds.map(async (fd) => {
      const inode = inodeOf(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (inode !== undefined) out.add(inode);
    }),
  );
  return out;
}

/** The processes holding these socket inodes, as far as this user may see. */
export async function socketHolders(inodes: Iterable<number>): Promise<Map<number, SocketHolder>> {
  const wanted = new Set(inodes);
  const found = new Map<number, SocketHolder>();
  if (wanted.size === 0) return found;
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  for (const pid of pids) {
    const held = await socketInodes(Number(pid));
    const mine = [...held].filter((inode) => wanted.has(inode) && !found.has(inode));
    if (mine.length === 0) continue;
    const name = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
    for (const inode of mine) found.set(inode, { pid: Number(pid), name });
    if (found.size === wanted.size) break;
  }
  return found;
}

function inodeOf(link: string): number | undefined {
  const match = /^socket:\[(\d+)\]$/.exec(link);
  return match ? Number(match[1]) : undefined;
}
