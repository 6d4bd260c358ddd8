/**
 * What a VM image has that a container image doesn't, as text: the initramfs setup that lets the kernel
 * find its disk and the env's seed share, and the boot-time unit changes. Pure data, written into the
 * rootfs by mmdebstrap hooks (vm.ts); bump VM_IMAGE_VERSION in vm.ts whenever any of it changes.
 */

/**
 * Packages every VM image adds to its recipe: a kernel, an initramfs builder, udev, resize2fs (for
 * systemd-growfs), and zstd, without which initramfs-tools falls back to gzip, slower to unpack.
 */
export const VM_PACKAGES: readonly string[] = ['e2fsprogs', 'initramfs-tools', 'linux-image-amd64', 'udev', 'zstd'];

/** The 9p mount tag of the env's seed share (see the init-bottom script). */
export const SEED_TAG = 'envbox-seed';

/** Drivers the initramfs loads itself: the disk and network are virtio-pci, the seed share is 9p. */
export const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net', '9pnet_virtio', '9p', 'ext4'];

/**
 * `MODULES=list`: only what a VM with virtio devices needs, not initramfs-tools' default "most" (an
 * initramfs a fifth the size, which the kernel unpacks noticeably faster under TCG).
 */
export const INITRAMFS_CONF = '# envbox: a small initramfs for virtio VMs\nMODULES=list\n';

export const INITRAMFS_HOOK = `#!/bin/sh
# envbox: the drivers a VM needs before its root filesystem is mounted.
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in ${INITRAMFS_MODULES.join(' ')}; do force_load "$m"; done
`;

/**
 * Runs in the initramfs once the root filesystem is mounted (read-write: the kernel command line says
 * rw), before init starts. The host puts the env's own files on the read-only seed share: once/ (user,
 * keys, hostname, network) is copied on the first boot only, so the guest can change them later;
 * always/ (the fstab with the shared folders, rewritten by every start) on every boot. The copy runs with
 * the guest's own cp through chroot: the initramfs only has klibc tools. A missing share (an image
 * booted by hand) changes nothing.
 */
export const INITRAMFS_SEED_SCRIPT = `#!/bin/sh
case "$1" in prereqs) exit 0 ;; esac
mnt="\${rootmnt}/mnt"
mount -t 9p -o trans=virtio,version=9p2000.L,ro ${SEED_TAG} "$mnt" 2>/dev/null || exit 0
copy() { chroot "\${rootmnt}" cp -dR --preserve=mode,ownership,timestamps "/mnt/$1/." /; }
if [ -d "$mnt/once" ] && [ ! -e "\${rootmnt}/var/lib/envbox/seeded" ]; then
  copy once && mkdir -p "\${rootmnt}/var/lib/envbox" && : > "\${rootmnt}/var/lib/envbox/seeded"
fi
[ -d "$mnt/always" ] && copy always
umount "$mnt"
exit 0
`;

/** mmdebstrap --setup-hook: the initramfs setup is in place before the kernel package builds the initramfs. */
export function setupHookScript(): string {
  const files: [string, string, string][] = [
    ['etc/initramfs-tools/conf.d/envbox', INITRAMFS_CONF, '644'],
    ['etc/initramfs-tools/hooks/envbox', INITRAMFS_HOOK, '755'],
    ['etc/initramfs-tools/scripts/init-bottom/envbox-seed', INITRAMFS_SEED_SCRIPT, '755'],
  ];
  const lines = ['#!/bin/sh', 'set -e', 'root="$1"'];
  for (const [path, text, mode] of files) {
    lines.push(`mkdir -p "$root/${path.slice(0, path.lastIndexOf('/'))}"`);
    lines.push(`cat > "$root/${path}" <<'ENVBOX_EOF'`, text.trimEnd(), 'ENVBOX_EOF', `chmod ${mode} "$root/${path}"`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Units a VM boots differently from a container: systemd-networkd configures eth0 (statically, from the
 * seed) and nothing logs in on a console, so the gettys go; each saves a process start that costs a
 * noticeable share of a TCG boot.
 */
export const VM_MASKED_UNITS = ['getty@tty1.service', 'serial-getty@ttyS0.service', 'e2scrub_reap.service', 'e2scrub_all.timer'];

/**
 * Also: Ctrl-Alt-Del powers off. `env halt` presses it through QMP: the ACPI power button needs
 * systemd-logind (and D-Bus), which these images don't run, while the kernel hands Ctrl-Alt-Del
 * straight to systemd as ctrl-alt-del.target.
 */
export function customizeHookScript(): string {
  return [
    '#!/bin/sh',
    'set -e',
    'root="$1"',
    'chroot "$root" systemctl enable --quiet systemd-networkd.service',
    ...VM_MASKED_UNITS.map((u) => `ln -sf /dev/null "$root/etc/systemd/system/${u}"`),
    'ln -sf /lib/systemd/system/poweroff.target "$root/etc/systemd/system/ctrl-alt-del.target"',
    '',
  ].join('\n');
}
