import { homedir } from 'node:os';
import { join } from 'node:path';

/** XDG base directories, honouring the XDG_* variables (read on every call so tests can point them elsewhere). */
export function stateHome(): string {
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'envbox');
}

export function cacheHome(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'envbox');
}

export function configHome(): string {
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'envbox');
}

/** Where every env's state folder lives: <state>/envs/<id>/ */
export function envsDir(): string {
  return join(stateHome(), 'envs');
}

/** Host-wide state shared by every env (network, idmap reservations, ssh_config). */
export function hostStateDir(): string {
  return join(stateHome(), 'host');
}

/** Cached images: <cache>/images/<key>/ */
export function imagesDir(): string {
  return join(cacheHome(), 'images');
}
