import { readFile, rename, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { withFileLock } from '../../util/lock.js';
import { hostStateDir } from '../../util/paths.js';

/**
 * Each VM env keeps one host port for its sshd forward from creation to destroy (it is pinned in
 * known_hosts and the ssh config). Reservations live in one host-wide file so a halted env's port is
 * not handed to another env while it is down.
 */

const file = () => join(hostStateDir(), 'qemu-ports.json');

async function readReservations(): Promise<Record<string, number>> {
  return (await readFile(file(), 'utf8').then(JSON.parse, () => ({}))) as Record<string, number>;
}

async function writeReservations(ports: Record<string, number>): Promise<void> {
  const tmp = `${file()}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(ports, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file());
}

/** A port the kernel says is free right now (bind 127.0.0.1:0). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether something on this host listens on 127.0.0.1:port. */
export function portBusy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(false)));
  });
}

const withPortsLock = <T>(fn: () => Promise<T>) =>
  mkdir(hostStateDir(), { recursive: true, mode: 0o700 }).then(() => withFileLock(join(hostStateDir(), 'qemu-ports.lock'), fn));

/** The env's port: the one it holds, else a free one no other env holds. */
export function reservePort(id: string): Promise<number> {
  return withPortsLock(async () => {
    const ports = await readReservations();
    if (ports[id]) return ports[id];
    const held = new Set(Object.values(ports));
    for (let tries = 0; tries < 20; tries++) {
      const port = await freePort();
      if (held.has(port)) continue;
      ports[id] = port;
      await writeReservations(ports);
      return port;
    }
    throw new EnvboxError('NO_FREE_PORT', 'could not find a free local port for the VM\'s SSH forward', { hint: 'free some ports, or destroy envs you no longer need' });
  });
}

export function releasePort(id: string): Promise<void> {
  return withPortsLock(async () => {
    const ports = await readReservations();
    if (!(id in ports)) return;
    delete ports[id];
    await writeReservations(ports);
  });
}
