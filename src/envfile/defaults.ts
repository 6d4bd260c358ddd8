import { basename, resolve } from 'node:path';
import { parseSize } from '../util/size.js';
import { foldersAreRemote } from './remote.js';
import type { EnvfileInput } from './schema.js';

export type Provider = 'container' | 'vm' | 'incus' | 'lxd';
export type RunWhen = 'once' | 'always' | 'never';

export interface PortForward {
  /** Where the forward listens: the host port (or the guest port for a reverse forward). */
  host: number;
  guest: number;
  hostIp: string;
  guestIp: string;
  protocol: 'tcp' | 'udp';
  autoCorrect: boolean;
  reverse: boolean;
}

export interface Folder {
  /** Absolute host path. */
  host: string;
  guest: string;
  events: 'auto' | 'on' | 'off';
  mode: 'mount' | 'sync';
  ignore: string[];
}

export type ProvisionStep = { index: number; name: string; run: RunWhen } & (
  | { kind: 'shell'; script: string }
  | { kind: 'script'; path: string }
  | { kind: 'file'; from: string; to: string }
);

export interface PortRange {
  from: number;
  to: number;
}

/** An Envfile with every default filled in: what the rest of envbox works from. */
export interface EnvConfig {
  name: string;
  provider: Provider;
  /** provider incus/lxd: the daemon (see the schema); undefined: the local one. */
  remote: string | undefined;
  image: { from: string; packages: string[] };
  cpus: number | undefined;
  memoryBytes: number | undefined;
  diskBytes: number | undefined;
  accel: 'auto' | 'kvm' | 'tcg';
  user: string;
  folders: Folder[];
  ports: PortForward[];
  autoPorts: { enabled: boolean; ignore: PortRange[]; only: PortRange[] };
  proxy: { socks: number | 'auto' | false; auth: boolean };
  network: { outbound: boolean };
  provision: ProvisionStep[];
  env: Record<string, string>;
  /** Absolute path of the Envfile and its folder (the project). */
  envfile: string;
  projectDir: string;
}

export const DEFAULT_IMAGE = 'debian/bookworm';
export const DEFAULT_USER = 'dev';

/** Turns a folder name into a valid host name: `My_App` → `my-app`. */
export function nameFromFolder(folder: string): string {
  const name = basename(folder)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return name || 'env';
}

function range(spec: number | string): PortRange {
  if (typeof spec === 'number') return { from: spec, to: spec };
  const [from, to] = spec.split('-').map(Number) as [number, number];
  return { from, to };
}

/** Fills in defaults. Takes an Envfile that validation accepted. */
export function applyDefaults(input: EnvfileInput, envfile: string): EnvConfig {
  const projectDir = resolve(envfile, '..');
  const user = input.user ?? DEFAULT_USER;
  const image = input.image ?? DEFAULT_IMAGE;
  const autoPorts = input.auto_ports ?? false;
  return {
    name: input.name ?? nameFromFolder(projectDir),
    provider: input.provider ?? 'container',
    remote: input.remote,
    image: typeof image === 'string' ? { from: image, packages: [] } : { from: image.from, packages: image.packages ?? [] },
    cpus: input.cpus,
    memoryBytes: input.memory === undefined ? undefined : parseSize(input.memory),
    diskBytes: input.disk === undefined ? undefined : parseSize(input.disk),
    accel: input.accel ?? 'auto',
    user,
    folders: (input.folders ?? [{ host: '.', guest: `/home/${user}/project` }]).map((f) => ({
      host: resolve(projectDir, f.host),
      guest: f.guest.length > 1 ? f.guest.replace(/\/+$/, '') : f.guest,
      events: f.events ?? 'auto',
      mode: f.mode ?? (foldersAreRemote(input.provider ?? 'container', input.remote) ? 'sync' : 'mount'),
      ignore: f.ignore ?? [],
    })),
    ports: (input.ports ?? []).map((p) => {
      const o = typeof p === 'number' ? { guest: p } : p;
      return {
        host: o.host ?? o.guest,
        guest: o.guest,
        hostIp: o.host_ip ?? '127.0.0.1',
        guestIp: o.guest_ip ?? '127.0.0.1',
        protocol: o.protocol ?? 'tcp',
        autoCorrect: o.auto_correct ?? false,
        reverse: o.reverse ?? false,
      };
    }),
    autoPorts: {
      enabled: autoPorts !== false,
      ignore: (typeof autoPorts === 'object' ? autoPorts.ignore ?? [] : []).map(range),
      only: (typeof autoPorts === 'object' ? autoPorts.only ?? [] : []).map(range),
    },
    proxy: { socks: input.proxy?.socks ?? 'auto', auth: input.proxy?.auth ?? false },
    network: { outbound: input.network?.outbound ?? true },
    provision: (input.provision ?? []).map((step, index) => {
      const common = { index, run: step.run ?? 'once', name: step.name ?? '' };
      if ('shell' in step) return { ...common, kind: 'shell', script: step.shell, name: common.name || `shell #${index + 1}` };
      if ('script' in step) return { ...common, kind: 'script', path: resolve(projectDir, step.script), name: common.name || step.script };
      return { ...common, kind: 'file', from: resolve(projectDir, step.file.from), to: step.file.to, name: common.name || `file ${step.file.from}` };
    }),
    env: Object.fromEntries(Object.entries(input.env ?? {}).map(([k, v]) => [k, String(v)])),
    envfile,
    projectDir,
  };
}
