import type { Client } from 'ssh2';
import { beforeEach, describe, expect, it, vi } from 'vitest';

const attempts: string[] = [];
let failures: string[] = [];

vi.mock('../../../src/sync/helper-ops.js', () => ({
  openHelperOps: vi.fn(async () => {
    const next = failures.shift();
    attempts.push(next ?? 'ok');
    if (next) throw new Error(next);
    return { via: 'envbox-guest' };
  }),
}));
vi.mock('../../../src/sync/sftp-ops.js', () => ({ openSftpOps: vi.fn(async () => ({ via: 'sftp' })) }));

const { guestOpener } = await import('../../../src/sync/open.js');
const client = {} as Client;

describe('opening the guest channel', () => {
  beforeEach(() => {
    attempts.length = 0;
  });

  it('waits for a helper that env up has not installed yet, then uses it', async () => {
    failures = ['envbox-guest ended its output: bash: line 1: /usr/local/lib/envbox/envbox-guest: No such file or directory', 'envbox-guest: root /home/dev/project: No such file or directory'];
    const events: string[] = [];
    const ops = await guestOpener((type) => void events.push(type))(client, ['/home/dev/project'], false);
    expect(ops.via).toBe('envbox-guest');
    expect(attempts).toHaveLength(3);
    expect(events).toEqual([]);
  });

  it('falls back to SFTP at once, and says so once, when the helper is there but cannot run', async () => {
    const events: string[] = [];
    const open = guestOpener((type, message) => void events.push(`${type}: ${message}`));
    failures = ['envbox-guest ended its output: cannot execute binary file: Exec format error'];
    expect((await open(client, ['/srv'], true)).via).toBe('sftp');
    failures = ['envbox-guest ended its output: cannot execute binary file: Exec format error'];
    expect((await open(client, ['/srv'], true)).via).toBe('sftp');
    expect(attempts).toHaveLength(2);
    expect(events).toHaveLength(1);
    expect(events[0]).toContain("envbox-guest can't run in the guest (envbox-guest ended its output: cannot execute binary file: Exec format error)");
  });
});
