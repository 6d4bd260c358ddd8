import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { env, ROOT, SHIM, withTempDir } from '../helpers/cli.js';
import { interact } from '../helpers/pty.js';

const stateEnv = (dir: string) => ({ XDG_STATE_HOME: join(dir, 'state'), XDG_CACHE_HOME: join(dir, 'cache') });

describe('env validate', () => {
  it('accepts Envfile.example', async () => {
    const r = await env(['validate', '--envfile', join(ROOT, 'Envfile.example')], { cwd: ROOT });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe('Envfile.example is valid (env "example", provider container)\n');
  });

  it('finds the Envfile in a parent folder and reports problems with exit status 2', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'Envfile'), 'name: ok\nports: [0]\ncpu: 2\n');
      await mkdir(join(dir, 'sub', 'deeper'), { recursive: true });
      const r = await env(['validate'], { cwd: join(dir, 'sub', 'deeper'), env: stateEnv(dir) });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        [
          `error: ${join(dir, 'Envfile')} has 2 problems:`,
          `${join(dir, 'Envfile')}:2:9 ports[0]: 0 is not a port — use a number from 1 to 65535`,
          `${join(dir, 'Envfile')}:3:1 cpu: unknown key "cpu" — did you mean "cpus"?`,
          '→ fix them and run env validate; nothing was changed',
          '',
        ].join('\n'),
      );
    });
  });

  it('speaks JSON with --json, errors included', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'Envfile'), 'memory: lots\n');
      const bad = await env(['validate', '--json'], { cwd: dir, env: stateEnv(dir) });
      expect(bad.code).toBe(2);
      const doc = JSON.parse(bad.stdout);
      expect(doc).toMatchObject({ ok: false, error: { code: 'ENVFILE_INVALID' } });
      expect(doc.error.problems).toEqual([
        { file: 'Envfile', line: 1, col: 9, path: 'memory', message: '"lots" is not a size — write it like 2GiB, 512M or 1.5G' },
      ]);
      await writeFile(join(dir, 'Envfile'), 'name: fine\n');
      const good = JSON.parse((await env(['validate', '--json'], { cwd: dir, env: stateEnv(dir) })).stdout);
      expect(good).toMatchObject({ ok: true, problems: [], config: { name: 'fine', provider: 'container' } });
    });
  });

  it('uses ENVBOX_ENVFILE, and says what to do when there is no Envfile', async () => {
    await withTempDir(async (dir) => {
      const none = await env(['validate'], { cwd: dir, env: stateEnv(dir) });
      expect(none.code).toBe(2);
      expect(none.stderr).toBe(`error: no Envfile in ${dir} or any folder above it\n→ run env init to create one, or pass --envfile PATH\n`);
      const viaEnv = await env(['validate'], { cwd: dir, env: { ...stateEnv(dir), ENVBOX_ENVFILE: join(ROOT, 'Envfile.example') } });
      expect(viaEnv.code).toBe(0);
    });
  });

  it('rejects an oversized Envfile before parsing it', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'Envfile'), `# ${'x'.repeat(300_000)}\n`);
      const r = await env(['validate'], { cwd: dir, env: stateEnv(dir) });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('an Envfile may be at most 262144');
    });
  });

  it('reports bad flags as usage errors (exit 2)', async () => {
    const r = await env(['validate', '--nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: Nonexistent flag: --nope\n→ see env validate --help\n');
  });
});

describe('env init', () => {
  it('--yes writes an Envfile that validates, and never overwrites without --force', async () => {
    await withTempDir(async (parent) => {
      const dir = join(parent, 'My Shop');
      await mkdir(dir);
      const r = await env(['init', '--yes', '--template', 'python', '--port', '8000', '--port', '5432'], { cwd: dir, env: stateEnv(parent) });
      expect(r.code).toBe(0);
      const text = readFileSync(join(dir, 'Envfile'), 'utf8');
      expect(text).toContain('name: my-shop\n');
      expect(text).toContain('ports: [8000, 5432]\n');
      expect(text).toMatch(/^# yaml-language-server: \$schema=\/.*schema\/envfile\.schema\.json$/m);
      expect((await env(['validate'], { cwd: dir, env: stateEnv(parent) })).code).toBe(0);

      const again = await env(['init', '--yes'], { cwd: dir, env: stateEnv(parent) });
      expect(again.code).toBe(2);
      expect(again.stderr).toContain('already exists');
      expect(readFileSync(join(dir, 'Envfile'), 'utf8')).toBe(text);
      expect((await env(['init', '--yes', '--force', '--template', 'node'], { cwd: dir, env: stateEnv(parent) })).code).toBe(0);
      expect(readFileSync(join(dir, 'Envfile'), 'utf8')).toContain('image: node/bookworm');
      // Nothing else is written into the project.
      expect(await readdir(dir)).toEqual(['Envfile']);
    });
  });

  it('every template makes a valid Envfile', async () => {
    for (const template of ['debian', 'python', 'node', 'postgres']) {
      await withTempDir(async (dir) => {
        expect((await env(['init', '--yes', '--template', template], { cwd: dir, env: stateEnv(dir) })).code).toBe(0);
        const r = await env(['validate'], { cwd: dir, env: stateEnv(dir) });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      });
    }
  });

  it('rejects bad flags before writing anything', async () => {
    await withTempDir(async (dir) => {
      const badName = await env(['init', '--yes', '--name', 'Bad_Name'], { cwd: dir, env: stateEnv(dir) });
      expect(badName.code).toBe(2);
      expect(badName.stderr).toContain('is not a valid host name');
      const badTemplate = await env(['init', '--yes', '--template', 'rails'], { cwd: dir, env: stateEnv(dir) });
      expect(badTemplate.code).toBe(2);
      expect(badTemplate.stderr).toBe('error: no template named rails\n→ use one of: debian, python, node, postgres\n');
      expect(existsSync(join(dir, 'Envfile'))).toBe(false);
    });
  });

  it('asks on a terminal: template, name, ports, guest folder', async () => {
    await withTempDir(async (dir) => {
      const down = '\x1b[B';
      const { code, output } = await interact(
        [SHIM, 'init'],
        [
          { expect: /Template/, send: `${down}\r` }, // the second template: python
          { expect: /Name/, send: 'Bad_Name\r' },
          { expect: /not a valid host name/, send: '\x15shop\r' }, // ^U clears the line
          { expect: /Ports/, send: '\x15 8000, 99999\r' },
          { expect: /not a port/, send: '\x158000, 5000\r' },
          { expect: /Guest path/, send: '\r' },
        ],
        { cwd: dir, env: { ...stateEnv(dir), NO_COLOR: '1' } },
      );
      expect(code, output).toBe(0);
      const text = readFileSync(join(dir, 'Envfile'), 'utf8');
      expect(text).toContain('image: python/bookworm');
      expect(text).toContain('name: shop\n');
      expect(text).toContain('ports: [8000, 5000]\n');
      expect(text).toContain('guest: /home/dev/project\n');
    });
  });
});

describe('env list', () => {
  it('is empty on a new host, in text and JSON', async () => {
    await withTempDir(async (dir) => {
      const text = await env(['list'], { env: stateEnv(dir) });
      expect(text).toMatchObject({ code: 0, stdout: 'No envs on this host yet. Run env up in a folder with an Envfile.\n' });
      const json = await env(['list', '--json'], { env: stateEnv(dir) });
      expect(JSON.parse(json.stdout)).toEqual({ ok: true, envs: [] });
    });
  });
});
