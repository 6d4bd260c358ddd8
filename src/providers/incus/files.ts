import { posix } from 'node:path';
import type { IncusApi } from './api.js';

/**
 * An instance's files through the daemon's file API: works on a stopped instance (so everything is in
 * place before first boot), takes guest uids/gids (the daemon maps them), and resolves paths inside
 * the guest, so a symlink in the image never leads out of it.
 */

export interface Owner {
  uid: number;
  gid: number;
  mode: number;
}

export interface GuestFile extends Owner {
  type: 'file' | 'directory' | 'symlink';
  content: string;
}

export const root = (mode: number): Owner => ({ uid: 0, gid: 0, mode });

export class InstanceFiles {
  constructor(
    private readonly api: IncusApi,
    readonly instance: string,
  ) {}

  private url(path: string): string {
    return `/1.0/instances/${encodeURIComponent(this.instance)}/files?path=${encodeURIComponent(path)}`;
  }

  private owner(headers: Record<string, string | string[] | undefined>): Owner & { type: GuestFile['type'] } {
    const get = (name: string) => String(headers[this.api.header(name).toLowerCase()] ?? '');
    return { uid: Number(get('Uid')), gid: Number(get('Gid')), mode: Number.parseInt(get('Mode') || '0', 8), type: (get('Type') || 'file') as GuestFile['type'] };
  }

  private async check(status: number, body: Buffer, what: string): Promise<void> {
    if (status < 400) return;
    let message = `HTTP ${status}`;
    try {
      message = (JSON.parse(body.toString('utf8')) as { error?: string }).error || message;
    } catch {
      // not JSON: keep the status
    }
    throw this.api.error(status, message, `${what} in ${this.instance}`);
  }

  async stat(path: string): Promise<(Owner & { type: GuestFile['type'] }) | undefined> {
    const reply = await this.api.raw('HEAD', this.url(path));
    if (reply.status === 404) return undefined;
    await this.check(reply.status, reply.body, `looking at ${path}`);
    return this.owner(reply.headers);
  }

  async read(path: string): Promise<GuestFile | undefined> {
    const reply = await this.api.raw('GET', this.url(path));
    if (reply.status === 404) return undefined;
    await this.check(reply.status, reply.body, `reading ${path}`);
    return { ...this.owner(reply.headers), content: reply.body.toString('utf8') };
  }

  /** A directory's entry names ([] when it doesn't exist). */
  async list(path: string): Promise<string[]> {
    const file = await this.read(path);
    if (file?.type !== 'directory') return [];
    return ((JSON.parse(file.content) as { metadata?: string[] }).metadata ?? []).filter((n) => n !== '.' && n !== '..');
  }

  private async post(path: string, type: GuestFile['type'], owner: Owner, body = ''): Promise<void> {
    const h = (name: string) => this.api.header(name);
    const reply = await this.api.raw('POST', this.url(path), {
      // octet-stream: with a form type the daemon would read the body as form fields and write an empty file.
      headers: {
        'Content-Type': 'application/octet-stream',
        [h('Type')]: type,
        [h('Uid')]: String(owner.uid),
        [h('Gid')]: String(owner.gid),
        [h('Mode')]: `0${(owner.mode & 0o7777).toString(8)}`,
        [h('Write')]: 'overwrite',
      },
      body,
    });
    await this.check(reply.status, reply.body, `writing ${path}`);
  }

  write(path: string, content: string, owner: Owner): Promise<void> {
    return this.post(path, 'file', owner, content);
  }

  symlink(path: string, target: string): Promise<void> {
    return this.post(path, 'symlink', root(0o777), target);
  }

  async remove(path: string): Promise<void> {
    const reply = await this.api.raw('DELETE', this.url(path));
    if (reply.status !== 404) await this.check(reply.status, reply.body, `removing ${path}`);
  }

  /** Creates the folder and missing parents: parents get `parents`, the folder itself `owner`; existing ones stay as they are. */
  async mkdirp(path: string, owner: Owner, parents: Owner = root(0o755)): Promise<void> {
    const parts = posix.normalize(path).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      if (await this.stat(dir)) continue;
      await this.post(dir, 'directory', i === parts.length ? owner : parents);
    }
  }
}
