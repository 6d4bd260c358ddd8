import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The envbox package folder (holds templates/, schema/, native/), from src/ under vitest or dist/ when built. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'templates'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('envbox package folder not found');
    dir = up;
  }
  root = dir;
  return dir;
}
