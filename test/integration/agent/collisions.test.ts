import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, guestHttp, httpGet, scratch, type Project, type Scratch } from './project.js';

// A host port that is already taken: env up refuses before it creates anything, naming the port and
// who holds it; with auto_correct it moves the forward to a free port and the agent uses that one.

let s: Scratch;
let p: Project;
let holder: net.Server;
let taken: number;

const envfile = (autoCorrect: boolean) => `name: agent-col
network: { outbound: false }
ports:
  - { guest: 8000, host: ${taken}${autoCorrect ? ', auto_correct: true' : ''} }
`;

beforeAll(async () => {
  s = await scratch();
  holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  taken = (holder.address() as net.AddressInfo).port;
  p = await s.project('col', envfile(false));
});

afterAll(async () => {
  holder?.close();
  await s?.cleanup();
});

describe('a taken host port', () => {
  it('stops env up before anything is made, naming the port and the process holding it', async () => {
    const up = await p.env(['up']);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(`host port ${taken} (tcp, ports[0]) is in use by `);
    expect(up.stderr).toContain(`(pid ${process.pid}, listening on 127.0.0.1:${taken})`);
    expect(up.stderr).toContain('auto_correct: true');
    const status = await p.json<{ env: { state: string } }>(['status']);
    expect(status.env.state).toBe('not created');
  });

  it('with auto_correct is moved to a free port, told, and used by the agent', async () => {
    await writeFile(join(p.dir, 'Envfile'), envfile(true));
    const up = await p.env(['up']);
    expect(up.code, up.stderr).toBe(0);
    const moved = /forwarded from host port (\d+) instead/.exec(up.stderr);
    expect(moved, up.stderr).not.toBeNull();
    const chosen = Number(moved![1]);
    expect(chosen).not.toBe(taken);
    const { forwards } = await p.json<{ forwards: { hostPort: number; requestedHostPort?: number; state: string }[] }>(['ports']);
    expect(forwards).toEqual([expect.objectContaining({ hostPort: chosen, requestedHostPort: taken, state: 'active' })]);
    await guestHttp(p, '127.0.0.1', 8000, 'moved');
    await eventually(async () => expect(await httpGet(chosen)).toBe('moved'), 10_000);
    // A second up keeps the same port: the agent's own listener is not a collision.
    const again = await p.env(['up']);
    expect(again.code, again.stderr).toBe(0);
    expect((await p.json<{ forwards: { hostPort: number }[] }>(['ports'])).forwards[0]!.hostPort).toBe(chosen);
  });
});
