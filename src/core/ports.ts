/**
 * Port planning, before `up` does anything (as Vagrant's handle_forwarded_port_collisions does):
 * every host port a forward needs is checked against what the host already listens on. A taken
 * port is an error naming the port and its holder, or, with auto_correct, is swapped for a free one
 * and reported. The plan is kept in the env's state so the agent binds exactly those ports.
 *
 *   planForwards(ports, held, previous)   pure: the plan, collisions, corrections
 *   checkPortCollisions(env, out)         reads the host, throws PORT_IN_USE or saves the plan
 *   currentPlan(env)                      what the agent binds (re-planned if the Envfile changed)
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import dgram from 'node:dgram';
import { agentFiles } from '../agent/files.js';
import { hostListeners, socketHolders, socketInodes, type SocketHolder } from '../agent/hostports.js';
import { runningAgentPid } from '../agent/pidfile.js';
import type { ForwardSpec } from '../agent/portfwd/spec.js';
import { bindOverlaps, type SocketEntry } from '../agent/procnet.js';
import type { PortForward } from '../envfile/defaults.js';
import { EnvboxError } from '../util/errors.js';
import type { Env } from './env.js';
import { ensureEnvDir, writeJsonAtomic } from './state.js';

export interface PortPlan {
  /** The Envfile's forwards this plan was made for: a different list means plan again. */
  ports: PortForward[];
  forwards: ForwardSpec[];
}

export interface PortConflict {
  /** Index in the Envfile's `ports`. */
  index: number;
  protocol: 'tcp' | 'udp';
  ip: string;
  port: number;
  /** The socket in the way (undefined: no free port was left at all). */
  held?: SocketEntry;
}

export interface Correction extends PortConflict {
  to: number;
}

const sameSocket = (protocol: string, ip: string, port: number) => (s: { protocol: string; ip: string; port: number }) =>
  s.protocol === protocol && s.port === port && bindOverlaps(s.ip, ip);

/** Pure: which host port each forward gets, given the sockets that are in the way. */
export function planForwards(
  ports: PortForward[],
  held: SocketEntry[],
  previous: ForwardSpec[] = [],
): { forwards: ForwardSpec[]; collisions: PortConflict[]; corrections: Correction[] } {
  const forwards: ForwardSpec[] = [];
  const collisions: PortConflict[] = [];
  const corrections: Correction[] = [];
  // Sockets by protocol and port: a search for a free port asks about thousands of ports, each in O(1).
  const byPort = new Map<string, SocketEntry[]>();
  for (const s of held) {
    const key = `${s.protocol}:${s.port}`;
    const list = byPort.get(key);
    if (list) list.push(s);
    else byPort.set(key, [s]);
  }
  const holder = (protocol: string, ip: string, port: number) => byPort.get(`${protocol}:${port}`)?.find(sameSocket(protocol, ip, port));
  // A corrected port must not be one another forward asks for, or one a corrected forward already took.
  const claimed = (index: number, protocol: string, ip: string, port: number) =>
    ports.some((q, j) => j !== index && !q.reverse && sameSocket(protocol, ip, port)({ protocol: q.protocol, ip: q.hostIp, port: q.host })) ||
    forwards.some((f) => f.kind === 'static' && sameSocket(protocol, ip, port)({ protocol: f.protocol, ip: f.hostIp, port: f.hostPort }));

  ports.forEach((p, index) => {
    if (p.reverse) {
      forwards.push({ id: `reverse:${index}`, kind: 'reverse', protocol: p.protocol, hostIp: p.hostIp, hostPort: p.host, guestIp: p.guestIp, guestPort: p.guest });
      return;
    }
    const spec: ForwardSpec = { id: `static:${index}`, kind: 'static', protocol: p.protocol, hostIp: p.hostIp, hostPort: p.host, guestIp: p.guestIp, guestPort: p.guest };
    const inTheWay = holder(p.protocol, p.hostIp, p.host);
    if (!inTheWay) return void forwards.push(spec);
    const conflict: PortConflict = { index, protocol: p.protocol, ip: p.hostIp, port: p.host, held: inTheWay };
    if (!p.autoCorrect) {
      collisions.push(conflict);
      return void forwards.push(spec);
    }
    const free = (port: number) => !holder(p.protocol, p.hostIp, port) && !claimed(index, p.protocol, p.hostIp, port);
    // The port an earlier up chose stays, so a corrected URL keeps working across ups.
    const before = previous.find((f) => f.id === spec.id && f.protocol === p.protocol && f.hostIp === p.hostIp && f.guestPort === p.guest && f.requestedHostPort === p.host);
    const to = before && free(before.hostPort) ? before.hostPort : nextFree(p.host, free);
    if (to === undefined) {
      collisions.push({ ...conflict, held: undefined });
      return void forwards.push(spec);
    }
    forwards.push({ ...spec, hostPort: to, requestedHostPort: p.host });
    corrections.push({ ...conflict, to });
  });
  return { forwards, collisions, corrections };
}

/** The next free port above `from`, wrapping round to 1024; undefined when every one is taken. */
function nextFree(from: number, free: (port: number) => boolean): number | undefined {
  for (let port = from + 1; port <= 65535; port++) if (free(port)) return port;
  for (let port = 1024; port < from; port++) if (free(port)) return port;
  return undefined;
}

/** Sockets in the way on this host: everything listening except what this env's own agent holds. */
async function socketsInTheWay(env: Env): Promise<SocketEntry[]> {
  const held = await hostListeners();
  const agent = await runningAgentPid(agentFiles(env.dir).pid);
  if (agent === undefined) return held;
  const ours = await socketInodes(agent);
  return held.filter((s) => !ours.has(s.inode));
}

export async function readPlan(env: Env): Promise<PortPlan | undefined> {
  try {
    return JSON.parse(await readFile(agentFiles(env.dir).plan, 'utf8')) as PortPlan;
  } catch {
    return undefined;
  }
}

async function savePlan(env: Env, plan: PortPlan): Promise<void> {
  await ensureEnvDir(env.id);
  await writeJsonAtomic(agentFiles(env.dir).plan, plan);
}

/**
 * Before `up` starts anything: every forward's host port (and a fixed proxy port) must be free.
 * Throws PORT_IN_USE naming each taken port and who holds it; auto_correct ports are moved and told.
 */
export async function checkPortCollisions(env: Env, out?: { info(text: string): void }): Promise<PortPlan> {
  const ports = env.config.ports;
  const socks = env.config.proxy.socks;
  // Only host ports the Envfile fixes can collide: without any, the host's socket tables need no reading.
  const fixed = ports.some((p) => !p.reverse) || typeof socks === 'number';
  const held = fixed ? await socketsInTheWay(env) : [];
  const previous = (await readPlan(env))?.forwards;
  const planned = planForwards(ports, held, previous);
  const proxyHeld = typeof socks === 'number' ? held.find(sameSocket('tcp', '127.0.0.1', socks)) : undefined;
  const holders = await socketHolders([...planned.collisions, ...planned.corrections].flatMap((c) => (c.held ? [c.held.inode] : [])).concat(proxyHeld ? [proxyHeld.inode] : []));
  const problems = planned.collisions.map((c) => `host port ${c.port} (${c.protocol}, ports[${c.index}]) ${heldBy(c, holders)}`);
  if (proxyHeld) problems.push(`proxy port ${socks} (proxy.socks) ${heldBy(proxyHeld, holders)}`);
  problems.push(...(await unbindable(planned.forwards)));
  if (problems.length > 0) {
    throw new EnvboxError('PORT_IN_USE', `env "${env.config.name}" cannot forward its ports:\n  ${problems.join('\n  ')}`, {
      hint: 'stop what holds the port, change the host port in the Envfile, or add auto_correct: true to the forward',
      details: { problems },
    });
  }
  for (const c of planned.corrections) {
    out?.info(`host port ${c.port} ${heldBy(c, holders)}; guest port ${ports[c.index]!.guest} is forwarded from host port ${c.to} instead`);
  }
  const plan = { ports, forwards: planned.forwards };
  await savePlan(env, plan);
  return plan;
}

/** The plan the agent binds: the saved one while the Envfile's forwards are unchanged, else a fresh one. */
export async function currentPlan(env: Env): Promise<PortPlan> {
  const saved = await readPlan(env);
  if (saved && JSON.stringify(saved.ports) === JSON.stringify(env.config.ports)) return saved;
  // Taken ports stay as asked: the agent reports them as failed forwards, which is all it can do.
  const plan = { ports: env.config.ports, forwards: planForwards(env.config.ports, await socketsInTheWay(env), saved?.forwards).forwards };
  await savePlan(env, plan);
  return plan;
}

function heldBy(c: { held?: SocketEntry } | SocketEntry, holders: Map<number, SocketHolder>): string {
  const held = 'inode' in c ? c : c.held;
  if (!held) return 'is taken and no free port is left to move it to';
  const holder = holders.get(held.inode);
  const at = held.ip.includes(':') ? `[${held.ip}]` : held.ip;
  if (holder) return `is in use by ${holder.name} (pid ${holder.pid}, listening on ${at}:${held.port})`;
  return `is in use by another program on ${at}:${held.port} (\`sudo ss -lntup sport = :${held.port}\` shows which)`;
}

/** Host addresses the kernel refuses (not on this host) or ports this user may not bind, caught now. */
async function unbindable(forwards: ForwardSpec[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of forwards.filter((x) => x.kind === 'static')) {
    const err = await probeBind(f);
    if (err?.code === 'EADDRNOTAVAIL') out.push(`host_ip ${f.hostIp} (port ${f.hostPort}) is not an address of this host`);
    else if (err?.code === 'EACCES') out.push(`host port ${f.hostPort} needs root to listen on`);
  }
  return out;
}

function probeBind(f: ForwardSpec): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    if (f.protocol === 'udp') {
      const socket = dgram.createSocket(f.hostIp.includes(':') ? 'udp6' : 'udp4');
      socket.once('error', (err) => {
        try {
          socket.close();
        } catch {
          // never bound: nothing to close
        }
        resolve(err);
      });
      socket.bind(f.hostPort, f.hostIp, () => socket.close(() => resolve(undefined)));
      return;
    }
    const server = net.createServer();
    server.once('error', (err) => resolve(err));
    server.listen(f.hostPort, f.hostIp, () => server.close(() => resolve(undefined)));
  });
}
