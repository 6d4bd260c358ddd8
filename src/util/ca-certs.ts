/**
 * Node reads the file NODE_EXTRA_CA_CERTS names as it starts, whether or not the process ever makes a TLS
 * connection: tens of milliseconds on each `env` command and on the agent's start. Neither uses the default CA
 * store (the Incus client pins its server's certificate), so the shim (native/env-shim.c) and the agent's
 * spawn hand the setting over under another name, and the process puts it back at once: everything it runs
 * (ssh, provisioning, a browser) sees the user's setting as it was.
 */
export const DEFERRED_CA_CERTS = 'ENVBOX_NODE_EXTRA_CA_CERTS';

/** Puts the deferred setting back into `env` (process.env by default). */
export function restoreCaCerts(env: NodeJS.ProcessEnv = process.env): void {
  const value = env[DEFERRED_CA_CERTS];
  if (value === undefined) return;
  env.NODE_EXTRA_CA_CERTS = value;
  delete env[DEFERRED_CA_CERTS];
}

/** A copy of `env` for a Node child that restores the setting itself (restoreCaCerts). */
export function deferCaCerts(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const value = env.NODE_EXTRA_CA_CERTS;
  if (value === undefined) return env;
  const copy: NodeJS.ProcessEnv = { ...env, [DEFERRED_CA_CERTS]: value };
  delete copy.NODE_EXTRA_CA_CERTS;
  return copy;
}
