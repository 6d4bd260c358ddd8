/**
 * The env's background agent, from the CLI's side: start it detached (the same program, hidden
 * `env agent` command), wait for its `ready`, ask it things over its control socket, stop it.
 *
 *   ensureAgent(env, out)        running with the current settings, else (re)started; waits for ready
 *   startAgent(env)              spawns `env agent` detached; returns its pid and where its events begin
 *   stopAgent(env)               SIGTERM, wait, SIGKILL
 *   agentRunning(env)            the agent's pid, or undefined
 *   agentRequest(env, m, p)      one control-socket request with a short timeout
 *   runAgent(env)                the agent itself, in the foreground (what `env agent` runs)
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Output } from '../cli/output.js';
import type { EnvConfig } from '../envfile/index.js';
import type { Agent, AgentStatus } from '../agent/agent.js';
import { requestControl } from '../agent/control.js';
import { eventLogEnd, followEvents, openEventLog, type AgentEvent } from '../agent/events.js';
import { agentFiles } from '../agent/files.js';
import type { NetnsAccess } from '../agent/link.js';
import { removePid, runningAgentPid, writePid } from '../agent/pidfile.js';
import { EnvboxError } from '../util/errors.js';
import { pidAlive, withFileLock } from '../util/lock.js';
import { packageRoot } from '../util/package.js';
import type { Progress } from '../util/progress.js';
import { trace } from '../util/trace.js';
import { existingSpec, type Env } from './env.js';
import { currentPlan, type PortPlan } from './ports.js';
import type { FolderSpec } from '../sync/manager.js';
import { agentServes } from '../sync/served.js';
import { ensureEnvDir, writeJsonAtomic } from './state.js';
import { deferCaCerts } from '../util/ca-certs.js';

export type { AgentStatus } from '../agent/agent.js';
export type { AgentEvent } from '../agent/events.js';
export { agentFiles } from '../agent/files.js';

const READY_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_ROTATE_BYTES = 1 << 20;

export const agentRunning = (env: Env): Promise<number | undefined> => runningAgentPid(agentFiles(env.dir).pid);

export function agentRequest<T = unknown>(env: Env, method: string, params: Record<string, unknown> = {}, timeoutMs = 2_000): Promise<T> {
  return requestControl(agentFiles(env.dir).socket, method, params, timeoutMs) as Promise<T>;
}

/** The control API's `status` answer, or undefined when no agent answers. */
export async function agentStatus(env: Env): Promise<AgentStatus | undefined> {
  if ((await agentRunning(env)) === undefined) return undefined;
  return agentRequest<AgentStatus>(env, 'status').catch(() => undefined);
}

interface ProxyState {
  port?: number;
  pacPort?: number;
  username?: string;
  password?: string;
}

/**
 * The folders as the agent handles them. Events are native where the guest's inotify sees host edits
 * by itself (bind mounts) and in synced folders (the copy is a real local write); replayed on other
 * mounts (9p, virtiofs, remote); `events: on`/`off` force it.
 */
export function folderSpecs(env: Env): FolderSpec[] {
  const native = env.provider.capabilities.nativeInotify;
  return env.config.folders.map((f) => ({
    host: f.host,
    guest: f.guest,
    mode: f.mode,
    events: f.mode === 'sync' ? 'native' : f.events === 'off' ? 'off' : f.events === 'on' || !native ? 'replayed' : 'native',
    ignore: f.ignore,
  }));
}

/** The settings an agent runs with; a running agent with a different hash is restarted by ensureAgent. */
function configHash(env: Env, plan: PortPlan): string {
  const { name, autoPorts, proxy } = env.config;
  const settings = { name, address: env.record?.machine?.address, forwards: plan.forwards, autoPorts, proxy, folders: folderSpecs(env) };
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
}

export interface AgentReady {
  pid: number;
  /** False when an agent with these settings was already running. */
  started: boolean;
  status?: AgentStatus;
  warnings: string[];
}

/**
 * Makes sure the env's agent runs with the current settings: nothing to do when it does (one pid
 * check and one control request), else it is (re)started and its events are followed until `ready`
 * (warnings are printed) or `failed` (thrown as AGENT_FAILED). Call it only for a running guest.
 */
export async function ensureAgent(
  env: Env,
  out: Pick<Output, 'warn'>,
  opts: { progress?: Progress; timeoutMs?: number; started?: StartedAgent } = {},
): Promise<AgentReady> {
  await ensureEnvDir(env.id);
  return withFileLock(join(env.dir, 'agent.lock'), async () => {
    if (opts.started) {
      // Started by `env up` while the guest booted: wait for that one. Should it have given up (a guest
      // slower to boot than the agent's login budget), start it again now that the guest is ready.
      try {
        const ready = await waitReady(env, opts.started, opts);
        for (const warning of ready.warnings) out.warn(warning);
        return ready;
      } catch (err) {
        if (!(err instanceof EnvboxError && err.code === 'AGENT_FAILED')) throw err;
        await stopAgent(env, { pid: opts.started.pid });
      }
    }
    const hash = configHash(env, await currentPlan(env));
    const pid = await agentRunning(env);
    if (pid !== undefined) {
      const status = await agentRequest<AgentStatus>(env, 'status').catch(() => undefined);
      if (status?.configHash === hash) return { pid, started: false, status, warnings: [] };
      // Other settings (the Envfile changed) or an agent that no longer answers: replace it.
      await stopAgent(env);
    }
    const started = startAgent(env);
    trace(`agent spawned (pid ${started.pid})`);
    const ready = await waitReady(env, started, opts);
    for (const warning of ready.warnings) out.warn(warning);
    return ready;
  });
}

export interface StartedAgent {
  pid: number;
  /** Where its events begin in the event log. */
  eventsOffset: number;
  exited: Promise<number | null>;
}

/** What the agent's own entry (agent-main.ts) reads instead of the Envfile: the settings `env up` just read. */
export const AGENT_CONFIG = 'agent-config.json';
export interface AgentConfigFile {
  id: string;
  config: EnvConfig;
}

/**
 * Spawns the env's agent (dist/agent-main.js, the lean entry; `env agent` runs the same from the
 * CLI), detached from the terminal, its output going to agent.log.
 */
export function startAgent(env: Env): StartedAgent {
  const files = agentFiles(env.dir);
  try {
    if (statSync(files.log).size > LOG_ROTATE_BYTES) renameSync(files.log, `${files.log}.1`);
  } catch {
    // no log yet
  }
  const eventsOffset = eventLogEnd(files.events);
  const log = openSync(files.log, 'a', 0o600);
  const configFile = join(env.dir, AGENT_CONFIG);
  writeFileSync(`${configFile}.tmp`, `${JSON.stringify({ id: env.id, config: env.config } satisfies AgentConfigFile)}\n`, { mode: 0o600 });
  renameSync(`${configFile}.tmp`, configFile);
  const main = join(packageRoot(), 'dist', 'agent-main.js');
  // A 1 MiB young generation instead of 16, one V8 worker thread, and gc() for agent-main's heap
  // check: the agent's garbage is small, its connections' bytes never enter it, and it runs all day.
  // Where the netns relay carries every connection (local containers) and no folder is copied or
  // replayed by the agent, its JavaScript is control only: without the optimizing compiler its
  // bursts of compiles (~5 MB each) never happen. Syncing a folder is the agent's own work, and
  // runs about twice as fast optimized.
  const agentSyncs = folderSpecs(env).some(agentServes);
  const controlOnly = env.provider.capabilities.netns && !agentSyncs ? ['--no-opt'] : [];
  const flags = ['--max-semi-space-size=1', '--v8-pool-size=1', '--expose-gc', ...controlOnly];
  const child = spawn(process.execPath, [...flags, main, 'agent', env.dir], {
    detached: true,
    stdio: ['ignore', log, log],
    cwd: '/',
    env: deferCaCerts(process.env),
  });
  closeSync(log);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  child.unref();
  return { pid: child.pid ?? 0, eventsOffset, exited };
}

async function waitReady(env: Env, started: StartedAgent, opts: { progress?: Progress; timeoutMs?: number }): Promise<AgentReady> {
  const files = agentFiles(env.dir);
  const timeoutMs = opts.timeoutMs ?? READY_TIMEOUT_MS;
  const stop = new AbortController();
  let outcome: AgentEvent | undefined;
  let exitCode: number | null | undefined;
  void started.exited.then((code) => {
    exitCode = code;
    // Let the reader pick up the last events the agent wrote before it went.
    setTimeout(() => stop.abort(), 300);
  });
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  await followEvents(
    files.events,
    started.eventsOffset,
    (event) => {
      if (event.type === 'ready' || event.type === 'failed') {
        outcome = event;
        return true;
      }
      opts.progress?.update(event.message);
    },
    { signal: stop.signal, pollMs: 20 },
  ).finally(() => clearTimeout(timer));
  trace(`agent said ${outcome?.type ?? 'nothing'}`);
  if (outcome?.type === 'ready') {
    const warnings = Array.isArray(outcome.warnings) ? outcome.warnings.map(String) : [];
    return { pid: started.pid, started: true, status: await agentStatus(env), warnings };
  }
  if (outcome?.type === 'failed') {
    throw new EnvboxError('AGENT_FAILED', `the env's agent could not start: ${outcome.message}`, {
      hint: typeof outcome.hint === 'string' ? outcome.hint : `env logs shows its events; ${files.log} its output`,
    });
  }
  if (exitCode === undefined) await stopAgent(env);
  const tail = (await readFile(files.log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n');
  const what = exitCode === undefined ? `was not ready within ${timeoutMs / 1000} s` : `exited (status ${exitCode}) before it was ready`;
  throw new EnvboxError('AGENT_FAILED', `the env's agent ${what}${tail ? `:\n${tail}` : ''}`, {
    hint: `env logs shows its events; ${files.log} its output`,
  });
}

/**
 * Stops the agent: SIGTERM, then SIGKILL if it has not gone within 5 s. False when none was running.
 * `pid`: an agent this process started, which may not have written its pid file yet.
 */
export async function stopAgent(env: Env, opts: { timeoutMs?: number; pid?: number } = {}): Promise<boolean> {
  const files = agentFiles(env.dir);
  const pid = opts.pid !== undefined && pidAlive(opts.pid) ? opts.pid : await agentRunning(env);
  if (pid === undefined) {
    await rm(files.socket, { force: true });
    await rm(files.pid, { force: true });
    return false;
  }
  signal(pid, 'SIGTERM');
  if (!(await exited(pid, opts.timeoutMs ?? STOP_TIMEOUT_MS))) {
    signal(pid, 'SIGKILL');
    await exited(pid, 2_000);
    if (existsSync(env.dir)) {
      const log = openEventLog(files.events);
      log.emit('stopped', `agent (pid ${pid}) killed: it did not stop within ${(opts.timeoutMs ?? STOP_TIMEOUT_MS) / 1000} s`);
      log.close();
    }
  }
  await rm(files.socket, { force: true });
  await removePid(files.pid, pid);
  return true;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // already gone is what we want
  }
}

async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/** `env agent`: runs the env's agent in this process until it is stopped; resolves with the exit status. */
export async function runAgent(env: Env): Promise<number> {
  const files = agentFiles(env.dir);
  let agent: Agent;
  try {
    if (!env.record?.machine) throw new EnvboxError('ENV_NOT_CREATED', `env "${env.config.name}" has not been created`, { hint: 'run env up' });
    const other = await runningAgentPid(files.pid);
    if (other !== undefined && other !== process.pid) {
      throw new EnvboxError('AGENT_RUNNING', `env "${env.config.name}" already has an agent (pid ${other})`, { hint: 'env halt stops it' });
    }
    const plan = await currentPlan(env);
    const proxy = await proxySettings(env);
    // Loaded here, not at the top: `env up` and `env halt` use this module too and need none of the agent itself.
    const { Agent } = await import('../agent/agent.js');
    const { openSession } = await import('./session.js');
    const netns = netnsAccess(env);
    agent = new Agent({
      envName: env.config.name,
      guestAddress: env.record.machine.address,
      files,
      forwards: plan.forwards,
      autoPorts: env.config.autoPorts,
      proxy: proxy.options,
      configHash: configHash(env, plan),
      folders: folderSpecs(env),
      link: {
        connect: async (timeoutMs) => {
          // Started by `env up` alongside the guest: a login tried before the guest has its address would
          // wait out an ARP timeout, so wait for the guest to run first.
          await untilRunning(env, timeoutMs);
          // The relay wants the guest's init pid right after the login: looked up while logging in.
          netns?.prefetch();
          return openSession(env, timeoutMs);
        },
        netns,
        running: (timeoutMs) => untilRunning(env, timeoutMs),
        guestState: () => env.provider.state(existingSpec(env)),
      },
    });
    await writePid(files.pid);
  } catch (err) {
    const log = openEventLog(files.events);
    log.emit('failed', (err as Error).message, { code: (err as EnvboxError).code, hint: (err as EnvboxError).hint });
    log.close();
    throw err;
  }
  const onSignal = (signal: string) => void agent.stop(`received ${signal}`);
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal).on('SIGHUP', onSignal);
  try {
    await agent.start();
    await rememberProxyPorts(env, agent.status());
    await agent.stopped;
    return 0;
  } catch {
    return 1;
  } finally {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal).off('SIGHUP', onSignal);
    await removePid(files.pid);
  }
}

async function untilRunning(env: Env, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await env.provider.state(existingSpec(env)).catch(() => 'unknown')) !== 'running' && Date.now() < deadline) await sleep(25);
}

function netnsAccess(env: Env): (NetnsAccess & { prefetch(): void }) | undefined {
  const { provider } = env;
  if (!provider.capabilities.netns || !provider.netnsPid) return undefined;
  let early: Promise<number | undefined> | undefined;
  return {
    prefetch: () => void (early = provider.netnsPid!(existingSpec(env)).catch(() => undefined)),
    pid: async () => {
      const prefetched = early;
      early = undefined;
      // Looked up before the login: across a reboot that can be the old boot's init, gone by now.
      const pid = prefetched ? await prefetched : undefined;
      if (pid !== undefined && existsSync(`/proc/${pid}`)) return pid;
      return provider.netnsPid!(existingSpec(env));
    },
    start: async (pid, onExit) => {
      const { startNetnsDialer } = await import('../native/netns.js');
      return startNetnsDialer({ pid, runDir: agentFiles(env.dir).runDir, onExit });
    },
  };
}

/** The proxy's ports and credentials: kept in proxy.json (0600) so `socks: auto` and the password stay put. */
async function proxySettings(env: Env): Promise<{ options?: ConstructorParameters<typeof Agent>[0]['proxy'] }> {
  const { socks, auth } = env.config.proxy;
  if (socks === false) return {};
  const file = agentFiles(env.dir).proxy;
  const saved = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as ProxyState;
  if (auth && (!saved.username || !saved.password)) {
    saved.username = 'envbox';
    saved.password = randomBytes(18).toString('base64url');
    await writeJsonAtomic(file, saved);
  }
  const credentials = auth ? { username: saved.username!, password: saved.password! } : undefined;
  const port = socks === 'auto' ? (saved.port ?? 0) : socks;
  return { options: { port, pacPort: saved.pacPort ?? 0, fallback: socks === 'auto', auth: credentials } };
}

async function rememberProxyPorts(env: Env, status: AgentStatus): Promise<void> {
  if (!status.proxy) return;
  const file = agentFiles(env.dir).proxy;
  const saved = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as ProxyState;
  const pacPort = Number(new URL(status.proxy.pacUrl).port);
  if (saved.port === status.proxy.port && saved.pacPort === pacPort) return;
  await writeJsonAtomic(file, { ...saved, port: status.proxy.port, pacPort });
}

export { runProxyBrowser } from '../agent/browser.js';
