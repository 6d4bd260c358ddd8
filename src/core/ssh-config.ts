import { join } from 'node:path';
import { renderSshConfig, sharedControlPath, writeSshConfigInclude, type SshConfigEntry } from '../ssh/ssh-config.js';
import { stateHome } from '../util/paths.js';
import { hostKeyAlias, keyFile, knownHostsFile, type Env } from './env.js';
import { envDir, listEnvs, type EnvRecord } from './state.js';

/** The file users Include from ~/.ssh/config (VS Code Remote-SSH and friends list every env from it). */
export const sshConfigInclude = () => join(stateHome(), 'ssh_config');
const controlDir = () => join(stateHome(), 'ssh');

function entry(record: EnvRecord, alias: string): SshConfigEntry {
  const env = { id: record.id, dir: envDir(record.id) } as Env;
  return {
    alias,
    hostKeyAlias: hostKeyAlias(env),
    hostName: record.machine!.address,
    port: Number(record.machine!.sshPort ?? 22),
    user: record.user?.name ?? 'dev',
    identityFile: keyFile(env),
    knownHostsFile: knownHostsFile(env),
  };
}

/** `env ssh-config`: one Host block named after the env. */
export function envSshConfig(record: EnvRecord): string {
  return renderSshConfig([entry(record, record.name)], { controlDir: controlDir() });
}

/** The connection-sharing socket `env ssh-config`'s Host block names (undefined when the path would be too long). */
export function envControlPath(record: EnvRecord): string | undefined {
  return sharedControlPath(entry(record, record.name), controlDir());
}

/** Rewrites the includable file listing every created env; an env whose name is taken twice is listed by id. */
export async function updateSshConfigInclude(): Promise<void> {
  const records = (await listEnvs()).map((e) => e.record).filter((r) => r.machine);
  const count = new Map<string, number>();
  for (const r of records) count.set(r.name, (count.get(r.name) ?? 0) + 1);
  const entries = records.map((r) => entry(r, count.get(r.name) === 1 ? r.name : r.id));
  await writeSshConfigInclude(sshConfigInclude(), entries, { controlDir: controlDir() });
}
