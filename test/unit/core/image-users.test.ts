import { describe, expect, it } from 'vitest';
import { imageUsers } from '../../../src/core/image-users.js';
import { writeRecord, type EnvRecord } from '../../../src/core/state.js';
import { tempXdgDir } from '../../helpers/xdg.js';

function record(id: string, name: string, extra: Partial<EnvRecord>): EnvRecord {
  return { id, name, envfile: `/p/${name}/Envfile`, projectDir: `/p/${name}`, provider: 'container', created: '2024-01-01T00:00:00.000Z', ...extra };
}

describe('imageUsers', () => {
  tempXdgDir('XDG_STATE_HOME', 'envbox-state-');

  it('maps container images and VM backing images to the envs built on them', async () => {
    const image = { key: 'aaaaaaaaaaaaaaaa', name: 'debian/bookworm', rootfs: '/x' };
    await writeRecord(record('web-11111111', 'web', { image, machine: { address: '10.0.0.2' } }));
    await writeRecord(record('vm-22222222', 'vm', { provider: 'vm', image, machine: { address: '127.0.0.1', image: { key: 'dddddddddddddddd', dir: '/d' } } }));
    await writeRecord(record('new-33333333', 'new', {}));
    expect([...(await imageUsers()).entries()]).toEqual([
      ['aaaaaaaaaaaaaaaa', ['vm', 'web']],
      ['dddddddddddddddd', ['vm']],
    ]);
  });
});
