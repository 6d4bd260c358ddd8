/**
 * The agent's own entry point: what `env up` starts (core/agent.ts startAgent) instead of going
 * through the CLI. It reads the env's settings from agent-config.json, which startAgent writes
 * (0600) from the Envfile it has just read, so the long-lived agent process loads neither oclif
 * nor the Envfile parser and schema: it stays small.
 *
 *   node dist/agent-main.js agent <env state dir>
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AGENT_CONFIG, runAgent, type AgentConfigFile } from './core/agent.js';
import { envDir, readRecord } from './core/state.js';
import { getProvider } from './providers/registry.js';

async function main(dir: string | undefined): Promise<number> {
  if (process.argv[2] !== 'agent' || !dir) {
    process.stderr.write('usage: node agent-main.js agent <env state dir> (env up starts it)\n');
    return 2;
  }
  const file = join(dir, AGENT_CONFIG);
  let saved: AgentConfigFile;
  try {
    saved = JSON.parse(await readFile(file, 'utf8')) as AgentConfigFile;
  } catch (err) {
    process.stderr.write(`envbox agent: cannot read ${file}: ${(err as Error).message}; env up writes it\n`);
    return 1;
  }
  const { config, id } = saved;
  const record = await readRecord(id);
  const provider = await getProvider(record?.provider ?? config.provider, { remote: config.remote });
  return runAgent({ config, id, dir: envDir(id), record, provider });
}

const code = await main(process.argv[3]).catch((err: unknown) => {
  process.stderr.write(`envbox agent: ${(err as Error).message}\n`);
  return 1;
});
process.exitCode = code;
// Everything is closed by now; should a stray handle remain, it must not keep a stopped agent alive.
setTimeout(() => process.exit(code), 1_000).unref();
