/** How `env ssh -- CMD` and `env exec CMD` differ when they take the shortcut (native/env-shim.c). */
export const SHORTCUT_NOTE = [
  'SHORTCUT: once env up has logged in, the env keeps one OpenSSH connection (the one `env ssh-config` names).',
  'A command given after `--` (or with no argument starting with -) then runs through it straight from the',
  'compiled `env`, without starting Node or logging in again: the same command line, guest folder, streams and',
  "exit status, except that a command killed by a signal exits 255 (OpenSSH's way) instead of 128+N, and the",
  'OpenSSH connection, not envbox, moves the bytes. A changed Envfile or pinned host key, a halted or suspended',
  'env, -t, --envfile or ENVBOX_ENVFILE take the ordinary path; ENVBOX_NO_SHORTCUT=1 always does.',
].join('\n');
