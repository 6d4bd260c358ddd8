import { describe, expect, it } from 'vitest';
import { GuestResolver, guestNameKind, parseGetent } from '../../../src/agent/resolve.js';
import { DialError } from '../../../src/agent/socks/dial.js';

describe('guestNameKind', () => {
  it.each([
    ['localhost', 'loopback'],
    ['LOCALHOST.', 'loopback'],
    ['app.localhost', 'loopback'],
    ['webapp', 'loopback'],
    ['api.webapp', 'loopback'],
    ['WebApp.', 'loopback'],
    ['webapp.localhost', 'loopback'],
    ['webapp2', 'lookup'],
    ['notwebapp', 'lookup'],
    ['webapp.example.com', 'lookup'],
    ['db', 'lookup'],
    ['localhost.example.com', 'lookup'],
  ])('%s → %s', (name, kind) => {
    expect(guestNameKind(name, 'webapp')).toBe(kind);
  });
});

describe('parseGetent', () => {
  it('keeps each address once, in the order the guest resolver gave them', () => {
    const out = [
      '10.0.3.7        STREAM db.internal',
      '10.0.3.7        DGRAM  ',
      '10.0.3.7        RAW    ',
      'fd42::7         STREAM ',
      'fd42::7         DGRAM  ',
      '',
    ].join('\n');
    expect(parseGetent(out)).toEqual(['10.0.3.7', 'fd42::7']);
    expect(parseGetent('garbage here\n')).toEqual([]);
  });
});

describe('GuestResolver', () => {
  it('asks the guest once per name while the answer is fresh, and says when a name is unknown', async () => {
    const asked: string[] = [];
    const resolver = new GuestResolver(async (command) => {
      asked.push(command);
      if (command.includes('db.internal')) return { code: 0, stdout: '10.0.3.7 STREAM db.internal\n' };
      if (command.includes('broken')) return { code: 1, stdout: '' };
      return { code: 2, stdout: '' };
    });
    expect(await resolver.resolve('db.internal')).toEqual(['10.0.3.7']);
    expect(await resolver.resolve('DB.internal.')).toEqual(['10.0.3.7']);
    await expect(resolver.resolve('nope.internal')).rejects.toEqual(new DialError('dns', 'nope.internal is not known in the guest'));
    await expect(resolver.resolve('broken.internal')).rejects.toMatchObject({ kind: 'dns', message: expect.stringContaining('exited 1') });
    expect(asked).toEqual(['getent ahosts db.internal', 'getent ahosts nope.internal', 'getent ahosts broken.internal']);
  });
});
