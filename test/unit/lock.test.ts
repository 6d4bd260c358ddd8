import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { pidAlive } from '../../src/util/lock.js';

describe('pidAlive', () => {
  it('is true for a running process and false for one that does not exist', () => {
    expect(pidAlive(process.pid)).toBe(true);
    expect(pidAlive(2 ** 22 + 1)).toBe(false); // above the kernel's pid_max ceiling
  });

  it('counts a process that has exited but was not reaped (a zombie) as gone', async () => {
    // `sleep 0` exits at once; its parent then becomes `sleep 30`, which never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
      const state = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      for (let i = 0; i < 200 && state() !== 'Z'; i++) await sleep(10);
      expect(state()).toBe('Z');
      expect(() => process.kill(pid, 0)).not.toThrow(); // the kernel still has it…
      expect(pidAlive(pid)).toBe(false); // …but it is gone for every purpose
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
