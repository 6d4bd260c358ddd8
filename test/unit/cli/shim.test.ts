import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../../src/commands/index.js';
import { ROOT } from '../../helpers/cli.js';

describe('the env shim', () => {
  it('knows exactly the top-level commands envbox has (bin/verbs ↔ src/commands)', () => {
    const verbs = readFileSync(join(ROOT, 'bin/verbs'), 'utf8').trim().split('\n');
    const topLevel = new Set(Object.keys(COMMANDS).map((id) => id.split(':')[0]!));
    expect(new Set(verbs.filter((v) => !v.startsWith('-')))).toEqual(topLevel);
    expect(verbs).toContain('--help');
    expect(verbs).toContain('-h');
  });
});
