import { describe, expect, it } from 'vitest';
import { shellQuote } from '../../../src/ssh/index.js';
import { runOk } from '../../../src/util/exec.js';

/** What a real POSIX shell makes of the quoted line: one NUL-terminated word per argument. */
async function wordsSeenBySh(line: string): Promise<string[]> {
  const { stdout } = await runOk('sh', ['-c', `printf '%s\\0' ${line}`]);
  return stdout.split('\0').slice(0, -1);
}

describe('shellQuote', () => {
  const table: [string[], string][] = [
    [['ls', '-la', '/home/dev/project'], 'ls -la /home/dev/project'],
    [['echo', ''], "echo ''"],
    [['echo', 'two words'], "echo 'two words'"],
    [['echo', "it's"], `echo 'it'\\''s'`],
    [['echo', "''"], `echo ''\\'''\\'''`],
    [['echo', '$HOME', '`id`', '$(id)'], "echo '$HOME' '`id`' '$(id)'"],
    [['echo', 'a\nb'], "echo 'a\nb'"],
    [['echo', '*', '?', '~', '#x', '!'], "echo '*' '?' '~' '#x' '!'"],
    [['FOO=bar', 'cmd'], "'FOO=bar' cmd"],
    [['echo', 'a;b', 'a&b', 'a|b', 'a>b', '(x)', '{a,b}'], "echo 'a;b' 'a&b' 'a|b' 'a>b' '(x)' '{a,b}'"],
    [['echo', '\\', '"'], `echo '\\' '"'`],
    [['git', 'commit', '-m', 'fix: user@host:path, 100%'], "git commit -m 'fix: user@host:path, 100%'"],
  ];

  it.each(table)('%j quotes as %j and sh reads the same words back', async (args, expected) => {
    expect(shellQuote(args)).toBe(expected);
    expect(await wordsSeenBySh(shellQuote(args))).toEqual(args);
  });

  it('round-trips every byte but NUL', async () => {
    const all = Array.from({ length: 255 }, (_, i) => String.fromCharCode(i + 1)).join('');
    const args = [all, ` ${all} `, "'", '\'"\'"'];
    expect(await wordsSeenBySh(shellQuote(args))).toEqual(args);
  });

  it('refuses a NUL byte, which no argument can carry', () => {
    expect(() => shellQuote(['a\0b'])).toThrow(expect.objectContaining({ code: 'SSH_BAD_ARGUMENT' }));
  });
});
