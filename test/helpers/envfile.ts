import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { checkEnvfile } from '../../src/envfile/index.js';
import { formatProblem } from '../../src/envfile/problem.js';

/** Writes an Envfile (and any extra files) into a fresh project folder and checks it. */
export async function check(
  yaml: string,
  opts: { files?: Record<string, string>; isRoot?: boolean } = {},
): Promise<{ problems: string[]; config: Awaited<ReturnType<typeof checkEnvfile>>['config']; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'envbox-ef-'));
  try {
    for (const [name, content] of Object.entries(opts.files ?? {})) {
      await mkdir(dirname(join(dir, name)), { recursive: true });
      await writeFile(join(dir, name), content);
    }
    await writeFile(join(dir, 'Envfile'), yaml);
    const result = await checkEnvfile(join(dir, 'Envfile'), { isRoot: opts.isRoot ?? false });
    const problems = result.problems.map((p) => formatProblem({ ...p, file: 'Envfile' }));
    return { problems, config: result.config, dir };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
