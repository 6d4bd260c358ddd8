import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { ROOT, runProgram } from '../helpers/cli.js';

// Both entry points: the compiled shim installed on the PATH, and the portable bin/env.
const SHIMS = [join(ROOT, 'native/build/env-shim'), join(ROOT, 'bin/env')];

// `env` installed by envbox must be indistinguishable from coreutils env for everything that
// is not an envbox command. Both are run the same way — found on the PATH as `env` — with the
// same environment, and compared byte for byte.
const CASES: { args: string[]; env?: Record<string, string>; cwd?: string; input?: string }[] = [
  { args: [] },
  { args: ['-i'] },
  { args: ['-i', 'A=1', 'B=two words'] },
  { args: ['-u', 'HOME'] },
  { args: ['-u'] },
  { args: ['-0'] },
  { args: ['-0', '-i', 'X=1', 'Y=2'] },
  { args: ['-S', 'echo  split   args'] },
  { args: ['-S'] },
  { args: ['--version'] },
  { args: ['FOO=bar', 'sh', '-c', 'echo "$FOO"; exit 3'] },
  { args: ['FOO=bar', 'true'] },
  { args: ['-i', 'PATH=/usr/bin:/bin', 'printenv'] },
  { args: ['nonexistent-command-xyz'] },
  { args: ['/etc/hostname'] },
  { args: ['--bogus-option'] },
  { args: ['-C', '/', 'pwd'] },
  { args: ['--chdir=/nonexistent', 'true'] },
  { args: ['sh', '-c', 'cat; kill -TERM $$'], input: 'piped input\n' },
  { args: ['statusx'] },
  { args: [], env: { PWD: '/stale/dir' } },
  { args: [], cwd: '/tmp' },
];

describe.each(SHIMS)('env passthrough to coreutils env (%s)', (SHIM) => {
  let coreutils: string;
  let envbox: string;
  let scratch: string;

  beforeAll(async () => {
    expect(existsSync(SHIM), `${SHIM} is built by npm run build`).toBe(true);
    scratch = await mkdtemp(join(tmpdir(), 'envbox-pass-'));
    coreutils = join(scratch, 'coreutils');
    envbox = join(scratch, 'envbox');
    await import('node:fs/promises').then(async (fs) => {
      await fs.mkdir(coreutils);
      await fs.mkdir(envbox);
    });
    await symlink('/usr/bin/env', join(coreutils, 'env'));
    await symlink(SHIM, join(envbox, 'env'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(`env ${c.args.join(' ')}${c.env ? ` with ${JSON.stringify(c.env)}` : ''}`, async () => {
      const run = (bin: string) =>
        runProgram(join(bin, 'env'), c.args, {
          argv0: 'env',
          cwd: c.cwd ?? ROOT,
          input: c.input,
          env: { PATH: '/usr/bin:/bin', HOME: '/root', LANG: 'C.UTF-8', ...c.env },
        });
      const expected = await run(coreutils);
      const actual = await run(envbox);
      expect(actual).toEqual(expected);
    });
  }

  it('runs envbox for its own commands', async () => {
    const result = await runProgram(join(envbox, 'env'), ['validate', '--envfile', join(ROOT, 'Envfile.example')], { argv0: 'env' });
    expect(result.stdout).toContain('is valid');
    expect(result.code).toBe(0);
  });

  for (const args of [['help'], ['--help'], ['-h']]) {
    it(`env ${args[0]} shows envbox's help, which mentions the passthrough`, async () => {
      const result = await runProgram(join(envbox, 'env'), args, { argv0: 'env' });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('PASSTHROUGH');
      expect(result.stdout).toMatch(/^ {2}validate +Check the Envfile/m);
    });
  }

  it('envbox without arguments is envbox, not coreutils env', async () => {
    await symlink(SHIM, join(scratch, 'envbox', 'envbox'));
    const result = await runProgram(join(envbox, 'envbox'), [], { argv0: 'envbox' });
    expect(result.stdout).toContain('PASSTHROUGH');
  });
});
