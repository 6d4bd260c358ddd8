import { describe, expect, it } from 'vitest';
import {
  failureHint,
  failureLines,
  fractionOf,
  initialBuildState,
  readBuildLine,
  type BuildStep,
} from '../../../src/images/build-progress.js';

/** Abridged `mmdebstrap --verbose` output of a real bookworm build (mirror host replaced). */
const OUTPUT = `I: chroot architecture amd64 is equal to the host's architecture
I: running apt-get update...
Get:1 http://mirror.example/debian bookworm InRelease [151 kB]
Fetched 9417 kB in 3s (2837 kB/s)
I: downloading packages with apt...
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
Need to get 38.0 MB of archives.
Get:1 http://mirror.example/debian-security bookworm-security/main amd64 liblzma5 amd64 5.4.1-1+deb12u2 [206 kB]
Get:2 http://mirror.example/debian bookworm/main amd64 libc6 amd64 2.36-9+deb12u14 [2759 kB]
I: extracting archives...
I: running --extract-hook directly: /usr/share/mmdebstrap/hooks/eatmydata/extract.sh /tmp/x
Get:1 http://mirror.example/debian/pool/main/libe/libeatmydata/eatmydata_130-2_all.deb [11.2 kB]
W: Download is performed unsandboxed as root as file 'eatmydata_130-2_all.deb' couldn't be accessed by user '_apt'. - pkgAcquire::Run (13: Permission denied)
I: installing essential packages...
Unpacking liblzma5:amd64 (5.4.1-1+deb12u2) ...
Unpacking libc6:amd64 (2.36-9+deb12u14) ...
Setting up liblzma5:amd64 (5.4.1-1+deb12u2) ...
Setting up libc6:amd64 (2.36-9+deb12u14) ...
I: installing remaining packages inside the chroot...
0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Need to get 1234 kB of archives.
Get:1 http://mirror.example/debian bookworm/main amd64 sudo amd64 1.9.13p3-1+deb12u1 [1889 kB]
Unpacking sudo (1.9.13p3-1+deb12u1) ...
Setting up sudo (1.9.13p3-1+deb12u1) ...
I: running --customize-hook in shell: sh -c 'rm -f "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap' exec /tmp/x
I: cleaning package lists and apt cache...
I: success in 61.2310 seconds`.split('\n');

function replay(lines: string[]): BuildStep[] {
  let state = initialBuildState();
  return lines.map((line) => {
    const step = readBuildLine(state, line);
    state = step.state;
    return step;
  });
}

describe('readBuildLine', () => {
  const steps = replay(OUTPUT);
  const updates = steps.flatMap((s) => (s.update ? [s.update] : []));

  it('says what mmdebstrap is doing, package by package', () => {
    expect(updates.map((u) => u.detail)).toEqual([
      'updating package lists',
      'downloading essential packages',
      'downloading liblzma5',
      'downloading libc6',
      'extracting essential packages',
      'installing essential packages',
      'unpacking liblzma5',
      'unpacking libc6',
      'setting up liblzma5',
      'setting up libc6',
      'installing packages',
      'downloading sudo',
      'unpacking sudo',
      'setting up sudo',
      'cleaning up',
    ]);
  });

  it('derives an overall fraction that only grows, leaving the end of the bar to the caller', () => {
    const fractions = updates.map((u) => u.fraction);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(fractions[0]).toBe(0);
    expect(fractions.at(-1)).toBe(0.93);
    expect(fractionOf(steps.at(-1)!.state)).toBe(0.96);
    // Each phase ends where the next begins: downloading 2 of 2 reaches the extract phase's start.
    expect(updates.find((u) => u.detail === 'downloading libc6')!.fraction).toBe(0.13);
    expect(updates.find((u) => u.detail === 'setting up libc6')!.fraction).toBe(0.5);
    expect(updates.find((u) => u.detail === 'setting up sudo')!.fraction).toBe(0.93);
  });

  it('keeps the phase lines and real warnings, not apt noise', () => {
    expect(steps.flatMap((s) => (s.log ? [s.log] : []))).toEqual([
      'updating package lists',
      'downloading 2 essential packages (38.0 MB)',
      'extracting essential packages',
      'installing essential packages',
      'installing packages',
      'downloading 1 more package (1234 kB)',
      'cleaning up',
    ]);
    expect(replay(['W: Couldn\'t find the key', 'E: Unable to locate package nope']).map((s) => s.log)).toEqual([
      'W: Couldn\'t find the key',
      'E: Unable to locate package nope',
    ]);
  });
});

describe('failure reporting', () => {
  it('quotes the errors when there are some, else the last lines', () => {
    const lines = ['I: downloading packages with apt...', 'E: Unable to locate package nope', 'E: Unable to locate package nope', 'x', 'y'];
    expect(failureLines(lines)).toEqual(['E: Unable to locate package nope']);
    expect(failureLines(['a', '', 'b', 'c'], 2)).toEqual(['b', 'c']);
    expect(failureLines([`E: setup failed: ${'x'.repeat(300)}`])[0]).toHaveLength(200);
  });

  it('hints at the cause it recognises', () => {
    expect(failureHint(['E: Unable to locate package nope'], '/l')).toBe(
      "nope is not a package in this suite — fix the name in the recipe or in the Envfile's image.packages (full log: /l)",
    );
    expect(failureHint(['Err:1 http://mirror.example/debian bookworm InRelease', '  Temporary failure resolving \'mirror.example\''], '/l')).toMatch(
      /^the package mirror could not be reached — .*ENVBOX_MIRROR/,
    );
    expect(failureHint(['E: something else'], '/l')).toBe('see the full log in /l');
  });
});
