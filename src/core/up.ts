import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import type { Output } from '../cli/output.js';
import type { ImageInfo } from '../images/index.js';
import type { GuestSpec, MachineRecord } from '../providers/provider.js';
import type { StartedAgent } from './agent.js';
import { EnvboxError } from '../util/errors.js';
import { withFileLock } from '../util/lock.js';
import { envsDir } from '../util/paths.js';
import { existingSpec, guestSpec, guestUser, hostKeyAlias, knownHostsFile, sshEndpoint, type Env } from './env.js';
import { hostProblems } from './host.js';
import { waitReady } from './ready.js';
import { updateSshConfigInclude } from './ssh-config.js';
import { ensureEnvDir, removeEnvDir, writeRecord, type EnvRecord } from './state.js';
import { runSteps, type StepDef } from './steps.js';
import { trace } from '../util/trace.js';

export interface UpOptions {
  /** true: run every provisioning step again; false: none; undefined: the first up only. */
  provision?: boolean;
}

interface UpContext {
  env: Env;
  out: Output;
  opts: UpOptions;
  image?: ImageInfo;
  spec?: GuestSpec;
  machine?: MachineRecord;
  /** This run created the guest (so it provisions, and a failure removes it again). */
  created: boolean;
  /** The guest was already running: `up` is a quick no-op. */
  wasRunning: boolean;
  /** The agent, started as soon as the guest was, so that it starts up while the guest boots. */
  agent?: StartedAgent;
}

export const lockFile = (id: string) => join(envsDir(), `${id}.lock`);

/**
 * `env up`: create or start the env, wait until a key login works, provision. Concurrent ups of one
 * env queue on a lock; the later ones find it running and just report.
 */
export async function up(env: Env, out: Output, opts: UpOptions = {}): Promise<Env> {
  trace('up: env opened');
  return withFileLock(
    lockFile(env.id),
    async () => {
      // Read again under the lock: another `env up` may have just created it.
      const { readRecord } = await import('./state.js');
      env.record = await readRecord(env.id);
      const ctx: UpContext = { env, out, opts, created: false, wasRunning: false };
      if (env.record?.machine && (await env.provider.state(existingSpec(env))) === 'running') ctx.wasRunning = true;
      await runSteps(upSteps(), ctx, out);
      return env;
    },
    { onWait: (pid) => out.info(`waiting for another envbox (pid ${pid}) working on env "${env.config.name}"…`) },
  );
}

function upSteps(): StepDef<UpContext>[] {
  return [
    {
      title: 'Checking ports',
      run: async (c) => {
        const { checkPortCollisions } = await import('./ports.js');
        await checkPortCollisions(c.env, c.out);
      },
    },
    {
      title: 'Checking the host',
      skip: (c) => c.wasRunning,
      run: async (c, step) => {
        const changes = await hostProblems(c.env, step);
        return changes.length ? `prepared: ${changes.join('; ')}` : undefined;
      },
    },
    {
      title: 'Image',
      skip: (c) => c.wasRunning || Boolean(c.env.record?.machine),
      run: async (c, step, signal) => {
        // The config cache knows the image's key: a built image is found without parsing its recipe.
        const { imageKeyFor } = await import('../envfile/cache.js');
        const key = imageKeyFor(c.env.config);
        const built = key ? await (await import('../images/store.js')).readImage(key) : undefined;
        if (built) {
          c.image = built;
          return built.name;
        }
        const { ensureImage } = await import('../images/index.js');
        c.image = await ensureImage(
          c.env.config.image.packages.length ? c.env.config.image : c.env.config.image.from,
          step,
          signal,
        );
        return c.image.name;
      },
    },
    {
      title: 'Creating the guest',
      skip: (c) => c.wasRunning || Boolean(c.env.record?.machine),
      run: async (c, step) => {
        const { env } = c;
        // Straight from their modules: ssh/index.js would load the SSH library, which creating needs none of.
        const { ensureUserKey, generateHostKey } = await import('../ssh/keys.js');
        const { writeKnownHosts } = await import('../ssh/known-hosts.js');
        const dir = await ensureEnvDir(env.id);
        const [userKey, hostKey] = await Promise.all([ensureUserKey(dir), generateHostKey()]);
        const spec = guestSpec(env, { rootfs: c.image!.rootfs, authorizedKey: userKey.publicKey, hostKey });
        const machine = await env.provider.create(spec, step);
        c.spec = spec;
        c.machine = machine;
        c.created = true;
        await writeKnownHosts(knownHostsFile(env), {
          publicKey: hostKey.publicKey,
          address: machine.address,
          port: machine.sshPort ?? 22,
          alias: hostKeyAlias(env),
        });
        const user = guestUser(env.config);
        const record: EnvRecord = {
          id: env.id,
          name: env.config.name,
          envfile: env.config.envfile,
          projectDir: env.config.projectDir,
          provider: env.config.provider,
          created: new Date().toISOString(),
          machine: machine as EnvRecord['machine'],
          image: { key: c.image!.key, name: c.image!.name, rootfs: c.image!.rootfs },
          user: { name: user.name, uid: user.uid, gid: user.gid, home: user.home },
        };
        await writeRecord(record);
        env.record = record;
        return {
          summary: `${machine.address}`,
          undo: async () => {
            await env.provider.destroy(spec, machine);
            await removeEnvDir(env.id);
            env.record = undefined;
          },
        };
      },
    },
    {
      title: 'Starting',
      skip: (c) => c.wasRunning,
      run: async (c, step) => {
        const spec = c.spec ?? existingSpec(c.env);
        const machine = c.machine ?? c.env.record!.machine!;
        // The agent starts first: it takes longer to start than the guest, and waits for the guest to run.
        const { agentRunning, startAgent, stopAgent } = await import('./agent.js');
        if ((await agentRunning(c.env)) === undefined) c.agent = startAgent(c.env);
        const agent = c.agent;
        const undo = async () => {
          await Promise.all([
            agent ? stopAgent(c.env, { pid: agent.pid }) : undefined,
            c.created ? undefined : c.env.provider.stop(spec, machine, { timeoutMs: 5000, force: true }),
          ]);
        };
        try {
          await c.env.provider.start(spec, machine, step);
        } catch (err) {
          if (agent) await stopAgent(c.env, { pid: agent.pid });
          throw err;
        }
        return { undo };
      },
    },
    {
      title: 'Waiting for SSH',
      skip: (c) => c.wasRunning,
      commit: true,
      run: async (c, step, signal) => {
        const started = Date.now();
        await waitReady(readinessChecks(c.env), { timeoutMs: 60_000, signal, onCheck: (d) => step.update(d) });
        const { writeFastIndex } = await import('./master.js');
        await writeFastIndex(c.env).catch(() => undefined); // only a shortcut: env ssh works without it
        return `${((Date.now() - started) / 1000).toFixed(1)}s`;
      },
    },
    {
      title: 'SSH config',
      skip: (c) => c.wasRunning,
      run: async () => {
        await updateSshConfigInclude();
      },
    },
    {
      title: 'Guest helper',
      skip: (c) => !needsFolderAgentSync(c.env),
      run: async (c, step) => {
        const { installGuestHelper } = await import('./sync.js');
        return installGuestHelper(c.env, step);
      },
    },
    {
      title: 'Forwards and proxy',
      run: async (c, step) => {
        const { ensureAgent } = await import('./agent.js');
        const ready = await ensureAgent(c.env, c.out, { progress: step, started: c.agent });
        const n = ready.status?.forwards.filter((f) => f.state === 'active').length ?? 0;
        return `${n} forward${n === 1 ? '' : 's'}${ready.status?.proxy ? `, proxy ${ready.status.proxy.address}` : ''}`;
      },
    },
    {
      // Replay only: the helper must hold the folders before guest watchers start (docs/events.md).
      title: 'File events',
      skip: (c) => !needsFolderAgentSync(c.env) || c.env.config.folders.some((f) => f.mode === 'sync'),
      run: async (c, step) => {
        const { waitSynced } = await import('./sync.js');
        const result = await waitSynced(c.env, { timeoutMs: 120_000, progress: step });
        const replayed = result.folders.filter((f) => f.events === 'replayed');
        return `replayed in ${replayed.length} folder${replayed.length === 1 ? '' : 's'}${replayed.some((f) => f.via === 'sftp') ? ' (via SFTP: envbox-guest not running)' : ''}`;
      },
    },
    {
      title: 'Syncing folders',
      skip: (c) => !c.env.config.folders.some((f) => f.mode === 'sync'),
      run: async (c, step) => {
        const { waitSynced } = await import('./sync.js');
        const result = await waitSynced(c.env, { timeoutMs: 30 * 60_000, progress: step });
        const synced = result.folders.filter((f) => f.mode === 'sync');
        const via = synced.some((f) => f.via === 'sftp') ? ' (via SFTP: envbox-guest not running)' : '';
        return `${synced.length} folder${synced.length === 1 ? '' : 's'} in sync, ${(result.waitedMs / 1000).toFixed(1)}s${via}`;
      },
    },
    // Last, as with Vagrant: steps can use the synced folders' files, the guest helper and the forwards.
    {
      title: 'Provisioning',
      skip: (c) =>
        c.env.config.provision.length === 0 || c.opts.provision === false || (c.opts.provision === undefined && !c.created && c.wasRunning),
      run: async (c, step) => {
        const { provisionEnv } = await import('./provision.js');
        const ran = await provisionEnv(c.env, c.out, step, { all: c.opts.provision === true });
        return ran === 0 ? 'nothing to do' : `${ran} step${ran === 1 ? '' : 's'}`;
      },
    },
  ];
}

function needsFolderAgentSync(env: Env): boolean {
  const native = env.provider.capabilities.nativeInotify;
  return env.config.folders.some((f) => f.mode === 'sync' || f.events === 'on' || (f.events === 'auto' && !native));
}

/** What "ready" means for a guest, in order; each says what to look at when it never passes. */
export function readinessChecks(env: Env) {
  const where = () => sshEndpoint(env);
  let guestPid: Promise<number | undefined> | undefined;
  return [
    {
      description: 'the guest is running',
      hint: `env logs may say why it stopped; try env halt && env up`,
      check: async () => (await env.provider.state(existingSpec(env))) === 'running',
    },
    {
      description: 'sshd accepts connections',
      hint: `the guest runs but nothing listens on ${where().host}:${where().port}; look at the guest's console log in ${env.dir}`,
      check: async () => {
        const { host, port } = where();
        // Where envbox can see into the guest's network, it looks at its socket table (no connection to sshd).
        if (env.provider.netnsPid) {
          guestPid ??= env.provider.netnsPid(existingSpec(env)).catch(() => undefined);
          const pid = await guestPid;
          const { guestListens } = await import('./listening.js');
          const seen = pid === undefined ? undefined : await guestListens(pid, host, port);
          if (seen !== undefined) return seen;
          guestPid = undefined; // no such process (yet, or any more): ask again next time
        }
        return tcpReachable(host, port);
      },
    },
    {
      description: 'the env key logs in',
      hint: 'sshd answers but refuses the env key; env destroy && env up recreates it',
      check: async () => {
        // OpenSSH's login stays behind as the env's shared connection (env ssh, ssh NAME); when it fails,
        // envbox's own client tries and says why (a changed host key, a refused key) or that it is too early.
        const { startMaster } = await import('./master.js');
        if (await startMaster(env).catch(() => false)) return true;
        try {
          const { openSession } = await import('./session.js');
          const client = await openSession(env, 10_000);
          client.end();
          return true;
        } catch (err) {
          // A slow guest (an emulated VM on a busy host) may not finish a login in time: try again.
          // A wrong host key or a refused key fails at once.
          if (err instanceof EnvboxError && ['SSH_TIMEOUT', 'SSH_CONNECT_FAILED'].includes(err.code)) return false;
          throw err;
        }
      },
    },
  ];
}

function tcpReachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port, timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

export function notRunning(env: Env): EnvboxError {
  return new EnvboxError('ENV_NOT_RUNNING', `env "${env.config.name}" is not running`, { hint: 'run env up' });
}
