import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Client } from 'ssh2';
import type { Output, Step } from '../cli/output.js';
import type { ProvisionStep } from '../envfile/index.js';
import { exec, execCapture, shellQuote } from '../ssh/index.js';
import { EnvboxError } from '../util/errors.js';
import type { Env } from './env.js';
import { guestEnvironment, openSession } from './session.js';
import { writeJsonAtomic } from './state.js';

/** Which `run: once` steps have run, by a hash of what they do (editing a step makes it run again). */
interface ProvisionRecord {
  done: Record<string, string>;
}

/** Waits (60 s at most) until systemd says start-up is over, whatever its verdict; a guest without systemd goes on at once. */
const BOOTED = 'if command -v systemctl >/dev/null 2>&1; then timeout 60 systemctl is-system-running --wait >/dev/null 2>&1; fi; exit 0';

const recordFile = (env: Env) => join(env.dir, 'provision.json');

async function readDone(env: Env): Promise<ProvisionRecord> {
  try {
    return JSON.parse(await readFile(recordFile(env), 'utf8')) as ProvisionRecord;
  } catch {
    return { done: {} };
  }
}

async function stepHash(step: ProvisionStep): Promise<string> {
  const h = createHash('sha256').update(JSON.stringify({ ...step, index: undefined, name: undefined }));
  if (step.kind === 'script') h.update(await readFile(step.path));
  if (step.kind === 'file') h.update(await readFile(step.from));
  return h.digest('hex').slice(0, 16);
}

/** Which steps run now: `all` (env provision, up --provision) runs every step but `never` ones unless named. */
export async function pendingSteps(env: Env, opts: { all: boolean; only?: number[] }): Promise<ProvisionStep[]> {
  const done = (await readDone(env)).done;
  const out: ProvisionStep[] = [];
  for (const step of env.config.provision) {
    if (opts.only) {
      if (opts.only.includes(step.index)) out.push(step);
      continue;
    }
    if (step.run === 'never') continue;
    if (step.run === 'always' || opts.all || done[String(step.index)] !== (await stepHash(step))) out.push(step);
  }
  return out;
}

/**
 * Runs the pending provisioning steps in order over SSH: shell and script steps as root (like
 * Vagrant's default), with the Envfile's env: variables; file steps as the guest user. Output is
 * streamed, each line prefixed with the step. A failing step stops here with exit 1, leaving the
 * env running so it can be looked into.
 */
export async function provisionEnv(env: Env, out: Output, progress: Step | undefined, opts: { all: boolean; only?: number[] }): Promise<number> {
  const steps = await pendingSteps(env, opts);
  if (steps.length === 0) return 0;
  const client = await openSession(env);
  const record = await readDone(env);
  try {
    // SSH answers before the guest has finished booting (sshd starts early); steps run on a booted
    // system, as on any machine, not while systemd-tmpfiles still empties /tmp.
    progress?.update('waiting for the guest to finish booting');
    await execCapture(client, BOOTED);
    for (const step of steps) {
      progress?.update(step.name);
      const code = await runStep(env, client, step, out);
      if (code !== 0) {
        throw new EnvboxError('PROVISION_FAILED', `provisioning step ${step.index + 1} (${step.name}) failed with exit status ${code}`, {
          hint: 'the env is still running: env ssh to look into it, then env provision to run the steps again',
          details: { step: step.index, status: code },
        });
      }
      record.done[String(step.index)] = await stepHash(step);
      await writeJsonAtomic(recordFile(env), record);
    }
  } finally {
    client.end();
  }
  return steps.length;
}

async function runStep(env: Env, client: Client, step: ProvisionStep, out: Output): Promise<number> {
  const prefix = `[${step.name}] `;
  const io = { stdout: prefixed(out, prefix, 'out'), stderr: prefixed(out, prefix, 'err'), env: guestEnvironment(env) };
  const user = env.record?.user?.name ?? env.config.user;
  const home = env.record?.user?.home ?? `/home/${user}`;
  if (step.kind === 'file') {
    const data = await readFile(step.from);
    // install(1) creates the parents and sets owner and mode in one go; the content comes on stdin.
    const cmd = `sudo install -D -o ${shellQuote([user])} -g ${shellQuote([user])} -m 0644 /dev/stdin ${shellQuote([step.to])}`;
    return exec(client, cmd, { ...io, stdin: Readable.from([data]) });
  }
  const script = step.kind === 'shell' ? step.script : await readFile(step.path, 'utf8');
  // The script goes in on stdin to a private temp file in /run (root's, never emptied by boot-time
  // cleaning), runs as root from the user's home, and is removed.
  const runner = [
    'set -e',
    'f=$(mktemp /run/envbox-provision.XXXXXX)',
    'trap \'rm -f "$f"\' EXIT',
    'cat > "$f"',
    'chmod 0700 "$f"',
    `cd ${shellQuote([home])} 2>/dev/null || cd /`,
    'set +e',
    'if head -c2 "$f" | grep -q "^#!"; then "$f"; else bash "$f"; fi',
  ].join('\n');
  const keep = Object.keys(io.env).length ? ` --preserve-env=${Object.keys(io.env).join(',')}` : '';
  return exec(client, `sudo -H${keep} bash -c ${shellQuote([runner])}`, {
    ...io,
    stdin: Readable.from([script]),
  });
}

/** A stream that prints each complete line through Output with the step's prefix. */
function prefixed(out: Output, prefix: string, which: 'out' | 'err'): Writable {
  let partial = '';
  const emit = (line: string) => (which === 'out' && out.json ? undefined : process.stderr.write(`${prefix}${line}\n`));
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) emit(line);
      cb();
    },
    final(cb) {
      if (partial) emit(partial);
      cb();
    },
  });
}
