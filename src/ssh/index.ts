/** SSH to guests: the env's keys, the pinned host key, logging in, running commands and shells, ssh_config. */
export { ensureUserKey, generateHostKey, type HostKey, type UserKey } from './keys.js';
export {
  fingerprint,
  knownHostsName,
  parseKnownHosts,
  pinnedHostVerifier,
  readPinnedKeys,
  writeKnownHosts,
  type HostPin,
  type HostTarget,
  type PinnedKey,
  type PinnedVerifier,
} from './known-hosts.js';
export { connect, connectionError, type ConnectOptions } from './connect.js';
export { exec, execCapture, shellQuote, type ExecIO, type PtySize } from './exec.js';
export { shell, type ShellOptions, type Terminal } from './shell.js';
export { renderSshConfig, writeSshConfigInclude, type SshConfigEntry, type SshConfigOptions } from './ssh-config.js';
