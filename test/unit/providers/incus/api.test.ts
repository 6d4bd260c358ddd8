import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiError, IncusApi, operationProgress } from '../../../../src/providers/incus/api.js';
import { EnvboxError } from '../../../../src/util/errors.js';
import { asyncOp, failure, fakeDaemon, reply, sync, type FakeDaemon, type Handler } from './fake-daemon.js';

let daemon: FakeDaemon | undefined;
let api: IncusApi | undefined;

async function start(handler: Handler, flavor: 'incus' | 'lxd' = 'incus'): Promise<{ daemon: FakeDaemon; api: IncusApi }> {
  daemon = await fakeDaemon(handler);
  api = new IncusApi({ kind: 'unix', socket: daemon.socket }, flavor);
  return { daemon, api };
}

afterEach(async () => {
  api?.close();
  await daemon?.close();
  api = undefined;
  daemon = undefined;
});

const caught = async (p: Promise<unknown>): Promise<EnvboxError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof EnvboxError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
};

describe('IncusApi over a unix socket', () => {
  it('gives a sync reply its metadata, and undefined for a missing thing with find', async () => {
    const { api } = await start((req, res) => {
      if (req.path === '/1.0') reply(res, 200, sync({ auth: 'trusted' }));
      else reply(res, 404, failure(404, 'Not Found'));
    });
    expect(await api.get('/1.0', 'answering')).toEqual({ auth: 'trusted' });
    expect(await api.find('/1.0/instances/nope', 'looking')).toBeUndefined();
  });

  it('follows an async operation through Incus-style wait timeouts, reporting progress', async () => {
    let waits = 0;
    const { api, daemon } = await start((req, res) => {
      if (req.method === 'POST' && req.path === '/1.0/instances') return reply(res, 202, asyncOp('op1'));
      if (req.path.startsWith('/1.0/operations/op1/wait')) {
        waits++;
        // Incus answers a wait that timed out with an error envelope.
        if (waits < 3) return reply(res, 200, failure(500, 'context deadline exceeded'));
        return reply(res, 200, sync({ id: 'op1', status: 'Success', status_code: 200, err: '', metadata: { done: true } }));
      }
      if (req.path === '/1.0/operations/op1') {
        return reply(res, 200, sync({ id: 'op1', status: 'Running', status_code: 103, err: '', metadata: { progress: { percent: `${waits * 40}`, stage: 'create_instance_from_image_unpack' } } }));
      }
      reply(res, 404, failure(404, 'Not Found'));
    });
    const seen: [string, number | undefined][] = [];
    const result = await api.call('POST', '/1.0/instances', 'creating x', { name: 'x' }, { update: (t, f) => seen.push([t, f]), log: () => {} });
    expect(result).toEqual({ done: true });
    expect(seen).toEqual([
      ['create instance from image unpack: 40%', 0.4],
      ['create instance from image unpack: 80%', 0.8],
    ]);
    const post = daemon.requests.find((r) => r.method === 'POST')!;
    expect(post.headers['content-type']).toBe('application/json');
    expect(JSON.parse(post.body.toString())).toEqual({ name: 'x' });
    expect(daemon.requests.filter((r) => r.path.includes('/wait')).every((r) => r.path.endsWith('timeout=1'))).toBe(true);
  });

  it('follows LXD-style waits that return the running operation', async () => {
    let waits = 0;
    const { api } = await start((req, res) => {
      if (req.path.endsWith('/state')) return reply(res, 202, asyncOp('op2'));
      waits++;
      reply(res, 200, sync({ id: 'op2', status: waits < 2 ? 'Running' : 'Success', status_code: waits < 2 ? 103 : 200, err: '', metadata: null }));
    }, 'lxd');
    await api.call('PUT', '/1.0/instances/x/state', 'starting x', { action: 'start' });
    expect(waits).toBe(2);
    expect(api.header('Uid')).toBe('X-LXD-Uid');
  });

  it('turns a failed operation into an error that says what to do', async () => {
    const { api } = await start((req, res) => {
      if (req.path.endsWith('/state')) return reply(res, 202, asyncOp('op3'));
      reply(res, 200, sync({ id: 'op3', status: 'Failure', status_code: 400, err: 'Failed to start device "f0": Required idmapping abilities not available', metadata: null }));
    });
    const err = await caught(api.call('PUT', '/1.0/instances/x/state', 'starting x', { action: 'start' }));
    expect(err.code).toBe('INCUS_IDMAP');
    expect(err.message).toBe('Incus refused starting x: Failed to start device "f0": Required idmapping abilities not available');
    expect(err.hint).toMatch(/raw\.idmap/);
  });

  it('maps an error envelope and a reply that is not JSON', async () => {
    const { api } = await start((req, res) => {
      if (req.path === '/1.0/instances') return reply(res, 403, failure(403, 'not authorized'));
      reply(res, 502, '<html>proxy error</html>');
    });
    const forbidden = await caught(api.get('/1.0/instances', 'listing instances'));
    expect(forbidden.code).toBe('INCUS_FORBIDDEN');
    expect(forbidden.hint).toMatch(/incus-admin group/);
    const garbled = await caught(api.get('/1.0', 'answering'));
    expect(garbled.message).toMatch(/unexpected reply \(HTTP 502\): <html>proxy error/);
  });

  it('says the daemon is down when nothing listens on the socket', async () => {
    const { daemon } = await start((_req, res) => reply(res, 200, sync(null)));
    const gone = new IncusApi({ kind: 'unix', socket: join(daemon.socket, '..', 'missing.socket') }, 'incus');
    const err = await caught(gone.get('/1.0', 'answering'));
    gone.close();
    expect(err.code).toBe('INCUS_DOWN');
    expect(err.message).toMatch(/no daemon answers on .*missing\.socket/);
  });
});

describe('apiError', () => {
  const ctx = { what: 'creating instance e1', daemon: '/var/lib/incus/unix.socket', flavor: 'incus' as const };
  it.each([
    [403, 'not authorized', ctx.daemon, 'INCUS_FORBIDDEN', /incus-admin group/],
    [403, 'not authorized', 'https://h:8443', 'INCUS_FORBIDDEN', /env remote add NAME URL --token/],
    [404, 'Image not found', ctx.daemon, 'INCUS_NOT_FOUND', /incus list/],
    [409, 'Instance "e1" already exists', ctx.daemon, 'INCUS_EXISTS', /env destroy/],
    [400, 'Failed initializing instance: No root device could be found', ctx.daemon, 'INCUS_NOT_INITIALISED', /incus admin init/],
    [500, 'Failed to listen on 127.0.0.1:20022: listen tcp 127.0.0.1:20022: bind: address already in use', ctx.daemon, 'INCUS_PORT_TAKEN', /picks a new one/],
    [500, 'listen tcp 10.0.0.9:20022: bind: cannot assign requested address', ctx.daemon, 'INCUS_LISTEN_ADDRESS', /host's own address/],
    [500, 'something odd', ctx.daemon, 'INCUS_ERROR', /show-log/],
  ])('%i %s', (status, message, daemon, code, hint) => {
    const err = apiError(status, message, { ...ctx, daemon });
    expect(err.code).toBe(code);
    expect(err.message).toBe(`Incus refused creating instance e1: ${message}`);
    expect(err.hint).toMatch(hint);
  });

  it('names LXD and its commands for an LXD daemon', () => {
    const err = apiError(403, 'not authorized', { ...ctx, flavor: 'lxd' });
    expect(err.message).toMatch(/^LXD refused/);
    expect(err.hint).toMatch(/the lxd group/);
  });
});

describe('operationProgress', () => {
  it.each([
    [null, undefined],
    [{}, undefined],
    [{ create_instance_from_image_unpack_progress: 'Unpacking image: 45% (200MB/s)' }, { text: 'Unpacking image: 45% (200MB/s)' }],
    [
      { create_instance_from_image_unpack_progress: 'Unpacking image: 45% (200MB/s)', progress: { percent: '45', stage: 'x' } },
      { text: 'Unpacking image: 45% (200MB/s)', fraction: 0.45 },
    ],
    [{ progress: { percent: '100', stage: 'image_unpack' } }, { text: 'image unpack: 100%', fraction: 1 }],
  ])('%j', (metadata, expected) => {
    expect(operationProgress(metadata as Record<string, unknown> | null)).toEqual(expected);
  });
});
