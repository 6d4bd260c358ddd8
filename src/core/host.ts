import type { Progress } from '../util/progress.js';
import { EnvboxError } from '../util/errors.js';
import { existingSpec, type Env } from './env.js';

/**
 * Before creating or starting anything: the host must have what the provider needs. As root envbox
 * prepares it (idempotently) and reports each change; otherwise it stops with what is missing and
 * the one command that fixes it — before anything is created.
 */
export async function hostProblems(env: Env, progress: Progress): Promise<string[]> {
  const checks = await env.provider.checkHost({ brief: true });
  const missing = checks.filter((c) => !c.ok);
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) {
    const fixes = [...new Set(missing.map((c) => c.fix).filter(Boolean))];
    throw new EnvboxError(
      'HOST_NOT_READY',
      `this host is not ready for ${env.provider.name} envs:\n${missing.map((c) => `  - ${c.name}: ${c.detail}`).join('\n')}`,
      { hint: fixes.length ? `run: ${fixes.join(' && ')}` : 'run env up once as root (sudo env up) to prepare the host' },
    );
  }
  return env.provider.prepareHost(existingSpec(env), progress);
}
