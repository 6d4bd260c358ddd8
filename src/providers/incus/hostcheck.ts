import { EnvboxError, isEnvboxError } from '../../util/errors.js';
import { findOnPath } from '../../util/exec.js';
import type { HostCheck } from '../provider.js';
import type { Flavor } from './api.js';
import type { Devices } from './config.js';
import { daemonRef, withDaemon, type Daemon } from './daemon.js';
import { adminGroup, initCommand } from './transport.js';

/**
 * What an env on this daemon needs: a daemon that answers and trusts envbox, storage for instances,
 * and the host tools envbox runs (tar to send images, openssl for a remote's client certificate).
 * Nothing here changes the daemon: its configuration is its admin's.
 */

export interface ServerInfo {
  auth: string;
  environment?: { server?: string; server_version?: string; kernel_features?: Record<string, string>; addresses?: string[] };
}

export const idmappedMounts = (info: ServerInfo) => info.environment?.kernel_features?.idmapped_mounts === 'true';

async function daemonChecks(daemon: Daemon, flavor: Flavor): Promise<HostCheck[]> {
  const info = await daemon.api.get<ServerInfo>('/1.0', 'answering');
  const trusted = info.auth === 'trusted';
  const checks: HostCheck[] = [
    {
      name: 'daemon',
      ok: trusted,
      detail: trusted
        ? `${daemon.label}: ${info.environment?.server ?? flavor} ${info.environment?.server_version ?? ''}`.trim()
        : `${daemon.label} answers but does not trust envbox`,
      fix: daemon.local ? `add yourself to the ${adminGroup(flavor)} group, or run env as root` : 'env remote rm NAME && env remote add NAME URL --token TOKEN',
    },
  ];
  if (!trusted) return checks;
  const profile = await daemon.api.find<{ devices?: Devices }>('/1.0/profiles/default', 'reading the default profile');
  const rootDisk = Object.values(profile?.devices ?? {}).some((d) => d.type === 'disk' && d.path === '/');
  checks.push({
    name: 'storage',
    ok: rootDisk,
    detail: rootDisk ? 'the default profile has a root disk' : 'the default profile has no root disk: the daemon was never initialised',
    fix: initCommand(flavor),
  });
  checks.push({
    name: 'folder-sharing',
    ok: true,
    detail: idmappedMounts(info)
      ? 'idmapped mounts: shared folders use shift=true'
      : 'no idmapped mounts: shared folders map the host user with raw.idmap (needs root:UID:1 in /etc/subuid and /etc/subgid)',
  });
  return checks;
}

export async function checkHost(flavor: Flavor, remote: string | undefined): Promise<HostCheck[]> {
  const checks: HostCheck[] = [];
  const tar = findOnPath('tar') !== undefined;
  checks.push({ name: 'tar', ok: tar, detail: tar ? 'tar found (sends images to the daemon)' : 'tar not found', fix: 'apt-get install tar' });
  try {
    const ref = await daemonRef(flavor, remote);
    if ('remote' in ref) {
      const openssl = findOnPath('openssl') !== undefined;
      checks.push({ name: 'openssl', ok: openssl, detail: openssl ? 'openssl found (client certificate)' : 'openssl not found', fix: 'apt-get install openssl' });
    }
    checks.push(...(await withDaemon(flavor, ref, (daemon) => daemonChecks(daemon, flavor))));
  } catch (err) {
    if (!isEnvboxError(err)) throw err;
    checks.push({ name: 'daemon', ok: false, detail: err.message, fix: err.hint });
  }
  return checks;
}

/** There is nothing envbox fixes on a daemon by itself: it says what is missing and how to fix it. */
export async function prepareHost(flavor: Flavor, remote: string | undefined): Promise<string[]> {
  // An unknown remote is a mistake in the Envfile, not the host's: say so on its own (exit 2, did-you-mean).
  await daemonRef(flavor, remote);
  const missing = (await checkHost(flavor, remote)).filter((c) => !c.ok);
  if (missing.length === 0) return [];
  throw new EnvboxError('HOST_NOT_READY', `the ${flavor} daemon is not ready for envs:\n${missing.map((c) => `  - ${c.name}: ${c.detail}`).join('\n')}`, {
    hint: [...new Set(missing.map((c) => c.fix).filter(Boolean))].join(' && ') || undefined,
  });
}
