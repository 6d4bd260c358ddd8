import { describe, expect, it } from 'vitest';
import { parseLeanUp } from '../../../src/cli/lean.js';
import Up from '../../../src/commands/up.js';

describe('the lean env up', () => {
  it('knows exactly the flags the oclif command has', () => {
    expect(Object.keys({ ...Up.baseFlags, ...Up.flags }).sort()).toEqual(['debug', 'envfile', 'json', 'provision']);
  });

  it.each([
    [[], { json: false, debug: false, envfile: undefined, provision: undefined }],
    [['--json'], { json: true, debug: false, envfile: undefined, provision: undefined }],
    [['--provision', '--debug'], { json: false, debug: true, envfile: undefined, provision: true }],
    [['--no-provision'], { json: false, debug: false, envfile: undefined, provision: false }],
    [['--envfile', 'a/Envfile', '--json'], { json: true, debug: false, envfile: 'a/Envfile', provision: undefined }],
    [['--envfile=b/Envfile'], { json: false, debug: false, envfile: 'b/Envfile', provision: undefined }],
  ])('reads %j', (args, expected) => {
    expect(parseLeanUp(args, {})).toEqual(expected);
  });

  it('takes the Envfile from ENVBOX_ENVFILE unless --envfile names one', () => {
    expect(parseLeanUp([], { ENVBOX_ENVFILE: 'x/Envfile' })?.envfile).toBe('x/Envfile');
    expect(parseLeanUp(['--envfile', 'y'], { ENVBOX_ENVFILE: 'x/Envfile' })?.envfile).toBe('y');
    expect(parseLeanUp([], { ENVBOX_ENVFILE: '' })?.envfile).toBeUndefined();
  });

  it.each([
    [['--help']],
    [['-h']],
    [['--jsn']],
    [['extra']],
    [['--envfile']],
    [['--envfile=']],
    [['--envfile', '--json']],
    [['--json', '--json']],
    [['--provision', '--no-provision']],
    [['--envfile', 'a', '--envfile=b']],
  ])('leaves %j to oclif (help, usage errors, its own rules)', (args) => {
    expect(parseLeanUp(args, {})).toBeUndefined();
  });
});
