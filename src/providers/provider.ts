import type { Progress } from '../util/progress.js';

/**
 * What a provider can do. Core reads these instead of catching "unsupported" errors
 * (the shape lima's driver.go and vagrant's provider plugins use).
 */
export interface Capabilities {
  /** `env suspend` / `env resume` work. */
  suspend: boolean;
  snapshots: boolean;
  /** How project folders reach the guest: a live shared mount, or a synced copy. */
  folders: 'mount' | 'sync';
  /** The guest's inotify sees host edits in shared folders by itself (bind mounts do; 9p does not). */
  nativeInotify: boolean;
  /** The agent can enter the guest's network namespace to dial guest-localhost directly (no SSH). */
  netns: boolean;
}

/** The guest user: same uid/gid as the host user who owns the project folder. */
export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** One OpenSSH public key line installed in ~/.ssh/authorized_keys. */
  authorizedKey: string;
  /**
   * The host owner of the project folders when it differs from uid/gid (e.g. root, who can't be the guest
   * user): shared folders map hostUid/hostGid <-> uid/gid. Defaults to uid/gid.
   */
  hostUid?: number;
  hostGid?: number;
}

export interface SharedFolder {
  /** Absolute host path. */
  host: string;
  /** Absolute guest path. */
  guest: string;
}

/** Everything a provider needs to create or start a guest, resolved from the Envfile and the env's state. */
export interface GuestSpec {
  /** The env id (`<name>-<hash>`): unique on this host, used as the container/VM name. */
  id: string;
  /** The guest's hostname (the Envfile's `name`). */
  hostname: string;
  /** The env's state folder (0700), where the provider keeps its own files. */
  stateDir: string;
  /** The cached image's root filesystem folder (read-only; the provider layers copy-on-write on top). */
  rootfs: string;
  cpus?: number;
  memoryBytes?: number;
  /** VMs: the virtual disk size, and how to accelerate (auto: KVM when it really boots, else TCG). */
  diskBytes?: number;
  accel?: 'auto' | 'kvm' | 'tcg';
  user: GuestUser;
  folders: SharedFolder[];
  network: { outbound: boolean };
  /** The guest's sshd host key (OpenSSH ed25519 format), generated on the host and pinned before first boot. */
  hostKey?: { privateKey: string; publicKey: string };
}

export type GuestState = 'running' | 'stopped' | 'frozen' | 'absent';

/** What `create` decided and core records in the env's state (a provider reads it back on later calls). */
export interface MachineRecord {
  /** Guest address the host reaches it on (for SSH and forwards). */
  address: string;
  /** Port sshd is reached on at `address` (default 22; e.g. a host-side forward for user-mode VM networking). */
  sshPort?: number;
  /** Provider-specific facts (idmap range, bridge, …), kept opaque to core. */
  [key: string]: unknown;
}

/** A problem on the host that stops this provider, with the command that fixes it. */
export interface HostCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** The command (or step) that fixes it when `ok` is false. */
  fix?: string;
}

export interface Provider {
  readonly name: string;
  readonly capabilities: Capabilities;
  /**
   * What the host has and lacks for this provider (for `env doctor` and before `up`). Never changes anything.
   * `brief` (before every `up`): the same ok/not ok, with the details that only describe left out where that is quicker.
   */
  checkHost(opts?: { brief?: boolean }): Promise<HostCheck[]>;
  /** Makes the host ready (idempotent); returns one line per change it made. Needs root where it changes the system. */
  prepareHost(spec: GuestSpec, progress: Progress): Promise<string[]>;
  /** Creates the guest (not started). Must undo its own partial work if it fails. */
  create(spec: GuestSpec, progress: Progress): Promise<MachineRecord>;
  start(spec: GuestSpec, machine: MachineRecord, progress: Progress): Promise<void>;
  /** Clean shutdown within `timeoutMs`, then forced; `force` skips the clean part. */
  stop(spec: GuestSpec, machine: MachineRecord, opts: { timeoutMs: number; force: boolean }): Promise<void>;
  freeze(spec: GuestSpec, machine: MachineRecord): Promise<void>;
  unfreeze(spec: GuestSpec, machine: MachineRecord): Promise<void>;
  /** Removes the guest and everything the provider made for it (host-wide resources when the last guest goes). */
  destroy(spec: GuestSpec, machine: MachineRecord | undefined): Promise<void>;
  state(spec: GuestSpec): Promise<GuestState>;
  /** PID of a process inside the guest's network namespace (providers with `capabilities.netns`). */
  netnsPid?(spec: GuestSpec): Promise<number | undefined>;
}
