import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageKey, type ResolvedRecipe } from '../../../../src/images/index.js';
import { baseDiskBytes, vmImageKey, vmRecipe } from '../../../../src/images/vm.js';
import { INITRAMFS_MODULES, setupHookScript } from '../../../../src/images/vm-guest.js';

const recipe: ResolvedRecipe = { suite: 'bookworm', components: ['main'], variant: 'apt', packages: ['git', 'openssh-server', 'sudo'], mirror: null };

describe('VM image identity', () => {
  it('adds the kernel, initramfs and udev to the recipe', () => {
    expect(vmRecipe(recipe).packages).toEqual(['e2fsprogs', 'git', 'initramfs-tools', 'linux-image-amd64', 'openssh-server', 'sudo', 'udev', 'zstd']);
  });
  it('has a key of its own: never a container image\'s, never one of another recipe', () => {
    const key = vmImageKey(recipe);
    expect(key).toMatch(/^[0-9a-f]{16}$/);
    expect(key).not.toBe(imageKey(recipe));
    expect(key).not.toBe(imageKey(vmRecipe(recipe)));
    expect(vmImageKey({ ...recipe, packages: ['sudo', 'openssh-server', 'git'] })).toBe(key);
    expect(vmImageKey({ ...recipe, packages: [...recipe.packages, 'curl'] })).not.toBe(key);
  });
  it.each([
    [0, 256],
    [300 * 2 ** 20, 616],
    [700 * 2 ** 20 + 1, 1097],
  ])('a %d-byte tree gets a %d MiB base disk', (bytes, mib) => expect(baseDiskBytes(bytes)).toBe(mib * 2 ** 20));
});

describe('setupHookScript', () => {
  it('writes the initramfs config, module hook and seed script into the target', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envbox-vmhook-'));
    try {
      await writeFile(join(dir, 'hook.sh'), setupHookScript());
      execFileSync('sh', [join(dir, 'hook.sh'), join(dir, 'root')]);
      const tools = join(dir, 'root/etc/initramfs-tools');
      expect(await readFile(join(tools, 'conf.d/envbox'), 'utf8')).toMatch(/^MODULES=list$/m);
      const hook = await readFile(join(tools, 'hooks/envbox'), 'utf8');
      expect(hook).toContain(`for m in ${INITRAMFS_MODULES.join(' ')}; do force_load "$m"; done`);
      const seed = await readFile(join(tools, 'scripts/init-bottom/envbox-seed'), 'utf8');
      expect(seed).toContain('mount -t 9p -o trans=virtio,version=9p2000.L,ro envbox-seed "$mnt"');
      expect(seed).toContain('${rootmnt}');
      for (const f of ['hooks/envbox', 'scripts/init-bottom/envbox-seed']) expect((await stat(join(tools, f))).mode & 0o777).toBe(0o755);
      // The seed script is valid sh.
      execFileSync('sh', ['-n', join(tools, 'scripts/init-bottom/envbox-seed')]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
