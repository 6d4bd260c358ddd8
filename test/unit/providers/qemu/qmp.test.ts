import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient, withQmp } from '../../../../src/providers/qemu/qmp.js';

/**
 * A fake QEMU on a unix socket: greets like QEMU 7.2, requires qmp_capabilities first, answers the
 * commands in `replies` (echoing the id), and can push events between replies.
 */
let dir: string;
let server: Server;
let path: string;
const received: unknown[] = [];
let replies: Record<string, (socket: Socket, id: unknown) => void>;

const send = (socket: Socket, msg: unknown) => socket.write(`${JSON.stringify(msg)}\r\n`);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'envbox-qmp-'));
  path = join(dir, 'qmp.sock');
  received.length = 0;
  replies = {
    qmp_capabilities: (s, id) => send(s, { return: {}, id }),
    'query-status': (s, id) => send(s, { return: { status: 'paused', singlestep: false, running: false }, id }),
    stop: (s, id) => {
      // An event before the reply, split across writes, as QEMU may do.
      s.write('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n{"return"');
      setTimeout(() => s.write(`: {}, "id": ${JSON.stringify(id)}}\r\n`), 10);
    },
    bogus: (s, id) => send(s, { error: { class: 'CommandNotFound', desc: "The command bogus has not been found" }, id }),
    system_powerdown: (s, id) => {
      send(s, { return: {}, id });
      setTimeout(() => send(s, { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } }), 10);
    },
    quit: (s, id) => {
      send(s, { return: {}, id });
      s.end();
    },
  };
  server = createServer((socket) => {
    let negotiated = false;
    let buffer = '';
    send(socket, { QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 } }, capabilities: ['oob'] } });
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      for (let i; (i = buffer.indexOf('\n')) >= 0; ) {
        const msg = JSON.parse(buffer.slice(0, i)) as { execute: string; id: unknown };
        buffer = buffer.slice(i + 1);
        received.push(msg);
        if (!negotiated && msg.execute !== 'qmp_capabilities') {
          send(socket, { error: { class: 'CommandNotFound', desc: 'Expecting capabilities negotiation with qmp_capabilities' }, id: msg.id });
          continue;
        }
        negotiated = true;
        replies[msg.execute]!(socket, msg.id);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
});

afterEach(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('QmpClient', () => {
  it('negotiates capabilities, then matches replies to commands', async () => {
    const status = await withQmp(path, (qmp) => qmp.execute('query-status'));
    expect(status).toEqual({ status: 'paused', singlestep: false, running: false });
    expect(received).toEqual([
      { execute: 'qmp_capabilities', id: 1 },
      { execute: 'query-status', id: 2 },
    ]);
  });

  it('skips events between replies and reassembles split lines', async () => {
    const qmp = await QmpClient.connect(path);
    try {
      expect(await qmp.execute('stop')).toEqual({});
      expect(await qmp.execute('query-status')).toMatchObject({ status: 'paused' });
    } finally {
      qmp.close();
    }
  });

  it('rejects with QEMU\'s error class and description', async () => {
    await expect(withQmp(path, (qmp) => qmp.execute('bogus'))).rejects.toThrow('CommandNotFound: The command bogus has not been found');
  });

  it('ignores events that arrive after a reply', async () => {
    const qmp = await QmpClient.connect(path);
    try {
      await qmp.execute('system_powerdown');
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(await qmp.execute('query-status')).toMatchObject({ status: 'paused' });
    } finally {
      qmp.close();
    }
  });

  it('notices QEMU closing the socket; later commands fail instead of hanging', async () => {
    const qmp = await QmpClient.connect(path);
    await qmp.execute('quit');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(qmp.execute('query-status')).rejects.toThrow(/closed/);
  });

  it('fails with an EnvboxError when nothing listens', async () => {
    await expect(QmpClient.connect(join(dir, 'none.sock'))).rejects.toMatchObject({ code: 'QMP_FAILED', hint: expect.stringMatching(/env halt -f/) });
  });
});
