import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvboxError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import { cacheHome } from '../../util/paths.js';
import type { MountMap } from './idmap.js';

/**
 * Idmapped bind mounts need open_tree + mount_setattr(MOUNT_ATTR_IDMAP), which neither Node nor
 * util-linux 2.38's mount(8) (no X-mount.idmap) can do, so this tiny C helper does it: a child enters
 * a fresh user namespace, the parent (root) writes the maps, and its fd idmaps a detached copy of SRC
 * that is then attached at DST. It is built once with the system C compiler and cached by source hash;
 * without a compiler envbox falls back to copying the image (rootfs.ts).
 */
const SOURCE = String.raw`#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int put(pid_t pid, const char *name, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

int main(int argc, char **argv) {
  int ro = argc == 6 && strcmp(argv[1], "--ro") == 0;
  if (argc != 5 + ro) {
    fprintf(stderr, "usage: %s [--ro] SRC DST UIDMAP GIDMAP\n", argv[0]);
    return 2;
  }
  const char *src = argv[1 + ro], *dst = argv[2 + ro], *uids = argv[3 + ro], *gids = argv[4 + ro];
  int ready[2], hold[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(hold, O_CLOEXEC)) return perror("pipe"), 1;
  pid_t child = fork();
  if (child < 0) return perror("fork"), 1;
  if (child == 0) {
    close(ready[0]);
    close(hold[1]);
    char c = unshare(CLONE_NEWUSER) == 0;
    if (write(ready[1], &c, 1) != 1) _exit(1);
    /* Keep the namespace alive until the parent has its fd: EOF comes when the parent exits or closes. */
    while (read(hold[0], &c, 1) > 0) {}
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  char ok = 0, path[64];
  int rc = 1;
  if (read(ready[0], &ok, 1) != 1 || !ok) { fprintf(stderr, "unshare(CLONE_NEWUSER) failed\n"); goto out; }
  if (put(child, "uid_map", uids)) { perror("uid_map"); goto out; }
  if (put(child, "gid_map", gids)) { perror("gid_map"); goto out; }
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) { perror("userns"); goto out; }
  int tree = syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) { perror("open_tree"); goto out; }
  struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP | (ro ? MOUNT_ATTR_RDONLY : 0), .userns_fd = userns };
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) { perror("mount_setattr"); goto out; }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH)) { perror("move_mount"); goto out; }
  rc = 0;
out:
  close(hold[1]);
  waitpid(child, NULL, 0);
  return rc;
}
`;

const binaryPath = () =>
  join(cacheHome(), 'native', `lxc-idmount-${createHash('sha256').update(SOURCE).digest('hex').slice(0, 12)}`);

let built: Promise<string | undefined> | undefined;

/** Whether the helper is built or can be (for env doctor, which must not build anything). */
export async function idmountAvailable(): Promise<boolean> {
  if (existsSync(binaryPath())) return true;
  const cc = await run(process.env.CC || 'cc', ['--version']).catch(() => undefined);
  return cc?.code === 0;
}

/** The helper's path, building it on first use; undefined when there is no working C compiler. */
export function idmountHelper(): Promise<string | undefined> {
  built ??= (async () => {
    const bin = binaryPath();
    if (existsSync(bin)) return bin;
    await mkdir(join(cacheHome(), 'native'), { recursive: true });
    const tmp = `${bin}.${randomBytes(4).toString('hex')}.tmp`;
    const cc = process.env.CC || 'cc';
    const result = await run(cc, ['-O2', '-o', tmp, '-x', 'c', '-'], { input: SOURCE }).catch(() => undefined);
    if (!result || result.code !== 0) {
      await rm(tmp, { force: true });
      return undefined;
    }
    await rename(tmp, bin);
    return bin;
  })();
  return built;
}

/** Attaches an idmapped view of `src` at `dst` (an existing empty folder). */
export async function idmappedBind(helper: string, src: string, dst: string, map: MountMap, readOnly: boolean): Promise<void> {
  const args = [...(readOnly ? ['--ro'] : []), src, dst, `${map.uid}\n`, `${map.gid}\n`];
  const result = await run(helper, args);
  if (result.code !== 0) {
    const unsupported = /mount_setattr: Invalid argument/.test(result.stderr);
    throw new EnvboxError(
      unsupported ? 'IDMAP_UNSUPPORTED' : 'IDMAP_MOUNT_FAILED',
      `could not mount ${src} for the container with its id mapping: ${result.stderr.trim()}`,
      {
        hint: unsupported
          ? `${src} is on a filesystem without idmapped-mount support; keep projects and images on ext4, xfs, btrfs or tmpfs`
          : 'run env doctor; idmapped mounts need Linux ≥ 5.12 and root',
      },
    );
  }
}
