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
import { getHeapStatistics } from 'node:v8';
import { AGENT_CONFIG, runAgent, type AgentConfigFile } from './core/agent.js';
import { envDir, readRecord } from './core/state.js';
import { getProvider } from './providers/registry.js';
import { restoreCaCerts } from './util/ca-certs.js';

restoreCaCerts();

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

// A full collection once the heap has grown this much since the last: the agent's garbage comes in
// bursts (start-up, a flood of connections) that V8 would otherwise keep mapped for a long while.
const HEAP_GROWTH_BYTES = 1.5 * (1 << 20);
const HEAP_CHECK_MS = 1_000;

/** With --expose-gc (startAgent passes it): collects after start-up and after each burst, so RSS stays low. */
function keepHeapSmall(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  let base = 0;
  setInterval(() => {
    if (getHeapStatistics().used_heap_size - base < HEAP_GROWTH_BYTES) return;
    gc();
    base = getHeapStatistics().used_heap_size;
  }, HEAP_CHECK_MS).unref();
}

keepHeapSmall();
const code = await main(process.argv[3]).catch((err: unknown) => {
  process.stderr.write(`envbox agent: ${(err as Error).message}\n`);
  return 1;
});
process.exitCode = code;
// Everything is closed by now; should a stray handle remain, it must not keep a stopped agent alive.
setTimeout(() => process.exit(code), 1_000).unref();
