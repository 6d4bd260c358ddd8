import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { requestControl, serveControl, socketAddress } from '../../../src/agent/control.js';
import { EnvboxError } from '../../../src/util/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-control-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the control socket', () => {
  it('is 0600 and answers requests; handler errors come back with their code', async () => {
    const path = join(dir, 'agent.sock');
    const server = await serveControl(path, (method, params) => {
      if (method === 'echo') return params;
      throw new EnvboxError('NOPE', 'not today');
    });
    try {
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect(await requestControl(path, 'echo', { a: 1 })).toEqual({ a: 1 });
      await expect(requestControl(path, 'other')).rejects.toMatchObject({ code: 'NOPE', message: 'the agent says: not today' });
    } finally {
      await server.close();
    }
  });

  it('works in a folder deeper than a unix socket path may be', async () => {
    const deep = join(dir, 'a'.repeat(60), 'b'.repeat(60));
    await mkdir(deep, { recursive: true });
    const path = join(deep, 'agent.sock');
    expect(socketAddress(path)).toMatch(/^\/proc\/self\/fd\/\d+\/agent\.sock$/);
    const server = await serveControl(path, () => 'pong');
    try {
      expect(await requestControl(path, 'ping')).toBe('pong');
    } finally {
      await server.close();
    }
  });

  it('gives up quickly when nothing answers', async () => {
    const started = Date.now();
    await expect(requestControl(join(dir, 'none.sock'), 'status')).rejects.toMatchObject({ code: 'AGENT_UNREACHABLE', message: expect.stringContaining('no control socket') });
    const net = await import('node:net');
    const silent = net.createServer(() => {});
    const path = join(dir, 'silent.sock');
    await new Promise<void>((resolve) => silent.listen(path, resolve));
    try {
      await expect(requestControl(path, 'status', {}, 200)).rejects.toMatchObject({ code: 'AGENT_UNREACHABLE', message: expect.stringContaining('no answer within 200 ms') });
    } finally {
      silent.close();
    }
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});
