import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { env, withTempDir } from '../helpers/cli.js';

// The agent's commands as a user meets them before any env exists (the real thing, with containers,
// is in test/integration/agent).

async function inProject<T>(fn: (run: (args: string[]) => ReturnType<typeof env>) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    await writeFile(join(dir, 'Envfile'), 'name: nothing-yet\nnetwork: { outbound: false }\n');
    return fn((args) => env(args, { cwd: dir, env: { XDG_STATE_HOME: join(dir, 'state') } }));
  });
}

describe('the agent commands', () => {
  it('list ports, proxy and logs in the help, and keep the agent itself hidden', async () => {
    const help = await env(['--help']);
    expect(help.stdout).toMatch(/^ {2}ports {2,}/m);
    expect(help.stdout).toMatch(/^ {2}proxy {2,}/m);
    expect(help.stdout).toMatch(/^ {2}logs {2,}/m);
    expect(help.stdout).not.toMatch(/^ {2}agent\b/m);
  });

  it('say the env must be created first, as text and as JSON', async () => {
    await inProject(async (run) => {
      for (const command of ['ports', 'proxy', 'agent']) {
        const r = await run([command]);
        expect(r.code).toBe(1);
        expect(r.stderr).toBe('error: env "nothing-yet" has not been created\n→ run env up first\n');
      }
      const json = await run(['ports', '--json']);
      expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'ENV_NOT_CREATED', hint: 'run env up first' } });
    });
  });

  it('env logs says there is nothing yet, and --json gives an empty list', async () => {
    await inProject(async (run) => {
      expect(await run(['logs'])).toMatchObject({ code: 0, stdout: 'env "nothing-yet" has no agent events yet (env up starts its agent)\n' });
      expect(JSON.parse((await run(['logs', '--json'])).stdout)).toEqual({ ok: true, name: 'nothing-yet', events: [] });
    });
  });

  it('env proxy takes only "browser" as its action', async () => {
    await inProject(async (run) => {
      const r = await run(['proxy', 'firefox']);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('Expected firefox to be one of: browser');
    });
  });
});
