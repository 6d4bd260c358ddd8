/**
 * Loopback peers for the agent tests: an agent built on a fake guest, echo services, free ports,
 * and a client that reports whether the far end answered or hung up. Everything started here is
 * stopped by onTestFinished, also when the test fails.
 */
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished, vi } from 'vitest';
import { Agent, type AgentOptions } from '../../../src/agent/agent.js';
import type { AgentEvent } from '../../../src/agent/events.js';
import { agentFiles, type AgentFiles } from '../../../src/agent/files.js';
import type { FakeGuest } from './fake-guest.js';

export interface TestAgent {
  agent: Agent;
  events: AgentEvent[];
  files: AgentFiles;
  /** Resolves with the first event (from now on or already seen) that matches. */
  event(match: (e: AgentEvent) => boolean): Promise<AgentEvent>;
}

export async function startTestAgent(
  guest: FakeGuest,
  opts: Partial<AgentOptions> & { netns?: boolean; relayFirst?: boolean; guestState?: () => Promise<string>; goneAfterMs?: number; attemptMs?: number } = {},
): Promise<TestAgent> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-agent-'));
  const events: AgentEvent[] = [];
  const { netns, relayFirst, guestState, goneAfterMs, attemptMs, ...rest } = opts;
  const files = agentFiles(dir);
  const agent = new Agent({
    envName: 'webapp',
    guestAddress: '10.0.3.15',
    files,
    forwards: [],
    autoPorts: { enabled: false, ignore: [], only: [] },
    configHash: 'test',
    pollMs: 50,
    connectTimeoutMs: 5_000,
    onEvent: (e) => events.push(e),
    link: {
      connect: (timeoutMs) => guest.login(timeoutMs),
      netns: netns ? guest.netns() : undefined,
      running: relayFirst ? async () => {} : undefined,
      guestState,
      goneAfterMs,
      attemptMs,
      backoff: { firstMs: 20, maxMs: 200 },
    },
    ...rest,
  });
  onTestFinished(async () => {
    await agent.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await agent.start();
  const event = async (match: (e: AgentEvent) => boolean) => {
    let found: AgentEvent | undefined;
    await vi.waitFor(() => {
      found = events.find(match);
      if (!found) throw new Error('no such event yet');
    }, { timeout: 5_000, interval: 10 });
    return found!;
  };
  return { agent, events, files, event };
}

async function closeOnFinish(server: net.Server | dgram.Socket): Promise<void> {
  onTestFinished(() => new Promise<void>((resolve) => (server instanceof net.Server ? server.close(() => resolve()) : server.close(() => resolve()))));
}

/** A TCP echo service on the real loopback (standing in for a guest service); resolves its port. */
export async function echoServer(host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  onTestFinished(() => sockets.forEach((s) => s.destroy()));
  await closeOnFinish(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as net.AddressInfo).port;
}

export async function udpEchoServer(host = '127.0.0.1'): Promise<number> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (msg, from) => socket.send(Buffer.concat([Buffer.from('echo:'), msg]), from.port, from.address));
  await closeOnFinish(socket);
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  return socket.address().port;
}

/** A port nothing listens on right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, host, resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/**
 * Connects, sends `payload`, half-closes and collects the answer. `closed` says the far end hung up
 * (or reset) without answering; `ms` is how long it all took.
 */
export async function exchange(port: number, payload: string, host = '127.0.0.1'): Promise<{ reply: string; ms: number; error?: string }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    socket.on('connect', () => socket.end(payload));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on('close', () => resolve({ reply: Buffer.concat(chunks).toString(), ms: Date.now() - started, error }));
    socket.setTimeout(5_000, () => socket.destroy(new Error('timeout')));
  });
}

/**
 * Sends `payload` and resolves with the first answer, without half-closing: the fake guest's sshd
 * (ssh2's server) closes a channel outright on EOF, which real sshd does not.
 */
export async function ask(port: number, payload: string): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    return await new Promise((resolve, reject) => {
      socket.once('data', (c: Buffer) => resolve(c.toString()));
      socket.once('error', reject);
      socket.once('close', () => resolve(''));
      socket.write(payload);
    });
  } finally {
    socket.destroy();
  }
}

/** One datagram to host:port and the first answer (or undefined after 2 s). */
export async function udpExchange(port: number, payload: string, host = '127.0.0.1'): Promise<string | undefined> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 2_000);
      socket.on('message', (msg) => {
        clearTimeout(timer);
        resolve(msg.toString());
      });
      socket.send(payload, port, host);
    });
  } finally {
    socket.close();
  }
}
