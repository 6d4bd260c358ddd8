import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { env as runEnv } from '../helpers/cli.js';

// `env ssh -- CMD` / `env exec CMD` through the env's OpenSSH connection, straight from the compiled env
// (native/env-shim.c), against the ordinary Node path on a real LXC container. PATH=/nonexistent shows
// which path ran: the shortcut needs no Node, the ordinary path cannot start without it.

let scratch: string;
let project: string;
const state = () => join(scratch, 'state');
const run = (args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  runEnv(args, { cwd: opts.cwd ?? project, input: opts.input, env: { XDG_STATE_HOME: state(), ...opts.env } });
const shortcutOnly = { PATH: '/nonexistent' };
const ordinary = { ENVBOX_NO_SHORTCUT: '1' };

const envfile = (greeting: string) => `name: e2e-shortcut
network: { outbound: false }
folders:
  - { host: ., guest: /home/dev/project }
env: { GREETING: "${greeting}", ODD: "it's a \\"quoted\\" $value" }
`;

async function knownHosts(): Promise<string> {
  const envs = join(state(), 'envbox', 'envs');
  const [dir] = (await readdir(envs)).filter((d) => d.startsWith('e2e-shortcut-'));
  return join(envs, dir, 'known_hosts');
}

describe('the env ssh / env exec shortcut', () => {
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'envbox-e2e-shortcut-'));
    project = join(scratch, 'project');
    await mkdir(join(project, 'sub dir'), { recursive: true });
    await writeFile(join(project, 'Envfile'), envfile('hello'));
    const up = await run(['up']);
    expect(up.code, up.stderr).toBe(0);
  });

  afterAll(async () => {
    if (existsSync(join(project, 'Envfile'))) await run(['destroy', '-f']);
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs without Node once env up has left the shared connection', async () => {
    const fast = await run(['ssh', '--', 'echo', 'no node needed'], { env: shortcutOnly });
    expect(fast).toEqual({ code: 0, stdout: 'no node needed\n', stderr: '' });
    const slow = await run(['ssh', '--', 'echo', 'no node needed'], { env: { ...shortcutOnly, ...ordinary } });
    expect(slow.code).toBe(127);
    expect(slow.stderr).toMatch(/cannot run node/);
  });

  it.each([
    ['ssh', '--', 'sh', '-c', 'echo "out:$GREETING:$ODD:$(pwd)"; echo "err:$1" >&2; exit 3', 'arg0', "it's \"ü\" $x"],
    ['exec', '--', 'sh', '-c', 'cat; echo "[$1]"; exit 0', 'arg0', ''],
    ['exec', 'cat'],
    ['exec', 'ls', 'no such file'],
    ['ssh', '--', 'printf', '%s|', 'a b', '*', '$HOME', ';', 'x=1'],
  ])('gives the ordinary path\'s stdout, stderr and exit status: %s %s %s', async (...args) => {
    for (const cwd of [project, join(project, 'sub dir')]) {
      const input = 'a line of stdin\n';
      const fast = await run(args, { cwd, input, env: shortcutOnly });
      const slow = await run(args, { cwd, input, env: ordinary });
      expect(fast.code, fast.stderr).not.toBe(127);
      expect(fast).toEqual(slow);
    }
  });

  it('leaves flags, -t and another Envfile to the ordinary path', async () => {
    for (const args of [['ssh', '-t', '--', 'true'], ['exec', 'ls', '-l'], ['ssh', '--json', '--', 'true']]) {
      expect((await run(args, { env: shortcutOnly })).code).toBe(127);
    }
    expect((await run(['ssh', '--', 'true'], { env: { ...shortcutOnly, ENVBOX_ENVFILE: join(project, 'Envfile') } })).code).toBe(127);
  });

  it('stops trusting its index when the Envfile or the pinned host key changes, until the ordinary path renews it', async () => {
    await writeFile(join(project, 'Envfile'), envfile('changed'));
    expect((await run(['ssh', '--', 'true'], { env: shortcutOnly })).code).toBe(127);
    const renewed = await run(['ssh', '--', 'printenv', 'GREETING']);
    expect(renewed).toMatchObject({ code: 0, stdout: 'changed\n' });
    expect(await run(['ssh', '--', 'printenv', 'GREETING'], { env: shortcutOnly })).toMatchObject({ code: 0, stdout: 'changed\n' });

    const file = await knownHosts();
    await utimes(file, new Date(), new Date(Date.now() + 5_000));
    expect((await run(['exec', 'true'], { env: shortcutOnly })).code).toBe(127);
    expect((await run(['exec', 'true'])).code).toBe(0);
    expect((await run(['exec', 'true'], { env: shortcutOnly })).code).toBe(0);
  });

  it('is gone once the env is suspended or halted', async () => {
    expect((await run(['suspend'])).code).toBe(0);
    expect((await run(['ssh', '--', 'true'], { env: shortcutOnly })).code).toBe(127);
    const refused = await run(['ssh', '--', 'true']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not running/);
    expect((await run(['resume'])).code).toBe(0);
    expect((await run(['ssh', '--', 'true'], { env: shortcutOnly })).code).toBe(0);

    expect((await run(['halt'])).code).toBe(0);
    expect(await readdir(join(state(), 'envbox', 'fast'))).toEqual([]);
    expect(await readdir(join(state(), 'envbox', 'ssh'))).toEqual([]);
    expect((await run(['ssh', '--', 'true'], { env: shortcutOnly })).code).toBe(127);
  });
});
