/**
 * The Envfile's `remote:` for provider incus/lxd: unset (the local daemon), a unix socket path, a
 * remote's name from `env remote add`, or the https URL of one. A remote daemon's guests can't see
 * this host's folders, so their folders default to `mode: sync`.
 */
export type RemoteSetting = { kind: 'local' } | { kind: 'socket'; path: string } | { kind: 'remote'; name: string };

export function parseRemoteSetting(value: string | undefined): RemoteSetting {
  if (value === undefined || value === '' || value === 'local') return { kind: 'local' };
  if (value.startsWith('/')) return { kind: 'socket', path: value };
  if (value.startsWith('unix:')) return { kind: 'socket', path: value.replace(/^unix:(\/\/)?/, '') };
  return { kind: 'remote', name: value };
}

/** A remote daemon's guests can't see this host's folders; a local socket's can. */
export const isLocalSetting = (value: string | undefined) => parseRemoteSetting(value).kind !== 'remote';

/** Whether an env's folders live on another machine: provider incus/lxd with a remote daemon. */
export const foldersAreRemote = (provider: string, remote: string | undefined) => (provider === 'incus' || provider === 'lxd') && !isLocalSetting(remote);
