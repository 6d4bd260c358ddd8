/** Which process counts as an env's agent: its command line names either entry and `agent`. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it, onTestFinished } from 'vitest';
import { isAgentProcess } from '../../../src/agent/pidfile.js';

async function sleeper(...args: string[]): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', ...args], { stdio: 'ignore' });
  onTestFinished(() => void child.kill('SIGKILL'));
  await once(child, 'spawn');
  return child.pid!;
}

describe('isAgentProcess', () => {
  it.each([
    ['the lean entry', ['/opt/envbox/dist/agent-main.js', 'agent', '/state/envs/x'], true],
    ['the CLI', ['/opt/envbox/dist/cli.js', 'agent', '--envfile', '/p/Envfile'], true],
    ['another CLI command', ['/opt/envbox/dist/cli.js', 'status'], false],
    ['a stranger', ['/srv/app/server.js', 'agent'], false],
  ])('%s: %s', async (_, args, expected) => {
    expect(await isAgentProcess(await sleeper(...args))).toBe(expected);
  });

  it('is false for a pid that does not exist', async () => {
    expect(await isAgentProcess(2147483646)).toBe(false);
  });
});
