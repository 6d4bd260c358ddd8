import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFERRED_CA_CERTS, deferCaCerts, restoreCaCerts } from '../../../src/util/ca-certs.js';
import { ROOT } from '../../helpers/cli.js';

describe('NODE_EXTRA_CA_CERTS, deferred past Node start', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'envbox-ca-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('the shim hands it to node under another name, and leaves it alone for coreutils env', () => {
    // A stand-in `node` first on the PATH prints the environment the shim gave it.
    writeFileSync(join(scratch, 'node'), '#!/bin/sh\nprintenv NODE_EXTRA_CA_CERTS || echo unset\nprintenv ENVBOX_NODE_EXTRA_CA_CERTS\n');
    chmodSync(join(scratch, 'node'), 0o755);
    const env = { PATH: `${scratch}:/usr/bin:/bin`, NODE_EXTRA_CA_CERTS: '/etc/extra-ca.pem' };
    const shim = join(ROOT, 'native/build/env-shim');
    const ours = spawnSync(shim, ['status'], { argv0: 'env', env, encoding: 'utf8' });
    expect(ours.stdout).toBe('unset\n/etc/extra-ca.pem\n');
    const theirs = spawnSync(shim, ['printenv', 'NODE_EXTRA_CA_CERTS'], { argv0: 'env', env, encoding: 'utf8' });
    expect(theirs.stdout).toBe('/etc/extra-ca.pem\n');
  });

  it('the process puts it back for everything it runs', () => {
    const env: NodeJS.ProcessEnv = { [DEFERRED_CA_CERTS]: '/etc/extra-ca.pem', HOME: '/root' };
    restoreCaCerts(env);
    expect(env).toEqual({ NODE_EXTRA_CA_CERTS: '/etc/extra-ca.pem', HOME: '/root' });
    restoreCaCerts(env);
    expect(env).toEqual({ NODE_EXTRA_CA_CERTS: '/etc/extra-ca.pem', HOME: '/root' });
  });

  it('a Node child (the agent) gets it deferred, and an unset one stays unset', () => {
    const env: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/etc/extra-ca.pem', HOME: '/root' };
    expect(deferCaCerts(env)).toEqual({ [DEFERRED_CA_CERTS]: '/etc/extra-ca.pem', HOME: '/root' });
    expect(env.NODE_EXTRA_CA_CERTS).toBe('/etc/extra-ca.pem');
    expect(deferCaCerts({ HOME: '/root' })).toEqual({ HOME: '/root' });
  });
});
