import { afterEach, describe, expect, it } from 'vitest';
import { IncusApi } from '../../../../src/providers/incus/api.js';
import { guestState, startInstance, stopInstance } from '../../../../src/providers/incus/power.js';
import type { GuestSpec } from '../../../../src/providers/provider.js';
import { silentProgress } from '../../../../src/util/progress.js';
import { asyncOp, failure, fakeDaemon, reply, sync, type FakeDaemon, type SeenRequest } from './fake-daemon.js';

/** A fake daemon with one instance whose state actions succeed or fail as the test says. */
function instanceDaemon(opts: { status: string; fail?: (body: { action: string; force?: boolean }, n: number) => string | undefined }) {
  let status = opts.status;
  let ops = 0;
  const results = new Map<string, string | undefined>();
  const devices = { 'envbox-folder-0': { type: 'disk', source: '/srv/p', path: '/home/dev/p', shift: 'true' }, 'envbox-ssh': { type: 'proxy' } };
  return (req: SeenRequest, res: Parameters<Parameters<typeof fakeDaemon>[0]>[1]) => {
    if (req.path === '/1.0/instances/e1' && req.method === 'GET') return reply(res, 200, sync({ status, devices }));
    if (req.path === '/1.0/instances/e1' && req.method === 'PATCH') return reply(res, 200, sync({}));
    if (req.path === '/1.0/instances/e1/state') {
      const body = JSON.parse(req.body.toString()) as { action: string; force?: boolean };
      const id = `op${++ops}`;
      const error = opts.fail?.(body, ops);
      results.set(id, error);
      if (!error) status = { start: 'Running', stop: 'Stopped', freeze: 'Frozen', unfreeze: 'Running' }[body.action]!;
      return reply(res, 202, asyncOp(id));
    }
    const id = /operations\/(op\d+)/.exec(req.path)?.[1];
    if (id) {
      const error = results.get(id);
      return reply(res, 200, sync({ id, status: error ? 'Failure' : 'Success', status_code: error ? 400 : 200, err: error ?? '', metadata: null }));
    }
    reply(res, 404, failure(404, 'Not Found'));
  };
}

const spec = {
  user: { name: 'dev', uid: 1000, gid: 1000, hostUid: 1000, hostGid: 1000, home: '/home/dev', authorizedKey: '' },
  folders: [{ host: '/srv/p', guest: '/home/dev/p' }],
} as GuestSpec;

let daemon: FakeDaemon | undefined;
let api: IncusApi | undefined;

async function start(handler: Parameters<typeof fakeDaemon>[0]) {
  daemon = await fakeDaemon(handler);
  api = new IncusApi({ kind: 'unix', socket: daemon.socket }, 'incus');
  return { daemon, api };
}

afterEach(async () => {
  api?.close();
  await daemon?.close();
});

const actions = (d: FakeDaemon) => d.requests.filter((r) => r.method === 'PUT' || r.method === 'PATCH').map((r) => `${r.method} ${r.body.toString()}`);

describe('instance power', () => {
  it('falls back to raw.idmap when the daemon cannot shift the folders, once', async () => {
    const { daemon, api } = await start(
      instanceDaemon({ status: 'Stopped', fail: (b, n) => (b.action === 'start' && n === 1 ? 'Failed to start device "envbox-folder-0": Required idmapping abilities not available' : undefined) }),
    );
    const logged: string[] = [];
    await startInstance(api, spec, 'e1', { update: () => {}, log: (l) => logged.push(l) });
    expect(actions(daemon)).toEqual([
      'PUT {"action":"start"}',
      `PATCH ${JSON.stringify({ config: { 'raw.idmap': 'uid 1000 1000\ngid 1000 1000' }, devices: { 'envbox-folder-0': { type: 'disk', source: '/srv/p', path: '/home/dev/p' } } })}`,
      'PUT {"action":"start"}',
    ]);
    expect(logged).toEqual(['the daemon cannot shift the shared folders: mapping the host user with raw.idmap instead']);
  });

  it('does not retry other start failures', async () => {
    const { api } = await start(instanceDaemon({ status: 'Stopped', fail: (b) => (b.action === 'start' ? 'No root device could be found' : undefined) }));
    await expect(startInstance(api, spec, 'e1', silentProgress)).rejects.toMatchObject({ code: 'INCUS_NOT_INITIALISED' });
  });

  it('thaws a frozen instance instead of starting it', async () => {
    const { daemon, api } = await start(instanceDaemon({ status: 'Frozen' }));
    await startInstance(api, spec, 'e1', silentProgress);
    expect(actions(daemon)).toEqual(['PUT {"action":"unfreeze"}']);
  });

  it('stops cleanly within the timeout, else by force', async () => {
    const clean = await start(instanceDaemon({ status: 'Running' }));
    await stopInstance(clean.api, 'e1', { timeoutMs: 2500, force: false });
    expect(actions(clean.daemon)).toEqual(['PUT {"action":"stop","timeout":3}']);
    clean.api.close();
    await clean.daemon.close();

    const stuck = await start(instanceDaemon({ status: 'Running', fail: (b) => (b.action === 'stop' && !b.force ? 'Failed shutting down instance: context deadline exceeded' : undefined) }));
    await stopInstance(stuck.api, 'e1', { timeoutMs: 1000, force: false });
    expect(actions(stuck.daemon)).toEqual(['PUT {"action":"stop","timeout":1}', 'PUT {"action":"stop","force":true}']);
  });

  it.each([
    [undefined, 'absent'],
    ['Running', 'running'],
    ['Stopping', 'running'],
    ['Frozen', 'frozen'],
    ['Stopped', 'stopped'],
    ['Error', 'stopped'],
  ])('status %s is %s', (status, state) => expect(guestState(status)).toBe(state));
});
