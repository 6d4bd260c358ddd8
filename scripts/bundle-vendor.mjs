// Inlines zod and yaml into the compiled modules that import them, with the code they share in chunks
// under dist/vendor/. Both packages are many small modules (zod ~120 ES modules, yaml ~60 CommonJS
// ones): loading them one by one costs ~150 ms on every command that reads an Envfile in full; the
// tree-shaken chunks load in about a third of that. envbox's own modules and every other package stay
// imports (by relative path, by name), so each exists once.
import { build } from 'esbuild';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VENDORED = ['zod', 'yaml'];
const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const importsVendored = new RegExp(`from ["'](${VENDORED.join('|')})(/[^"']*)?["']`);

// tsc has just written every module afresh: chunks of an earlier build belong to nothing now.
await rm(join(dist, 'vendor'), { recursive: true, force: true });
const entryPoints = [];
for (const entry of await readdir(dist, { recursive: true, withFileTypes: true })) {
  const file = join(entry.parentPath, entry.name);
  if (entry.isFile() && entry.name.endsWith('.js') && !file.startsWith(join(dist, 'vendor')) && importsVendored.test(await readFile(file, 'utf8'))) entryPoints.push(file);
}

const inside = (path) => VENDORED.some((name) => path.includes(`/node_modules/${name}/`));
await build({
  entryPoints,
  outdir: dist,
  outbase: dist,
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  // Reads the maps tsc wrote beside each module, so stack positions still lead to src/.
  sourcemap: true,
  chunkNames: 'vendor/[name]-[hash]',
  logLevel: 'warning',
  // yaml is CommonJS and requires Node's built-ins: ES modules have no require of their own.
  banner: { js: "import { createRequire as __vendorRequire } from 'node:module'; const require = __vendorRequire(import.meta.url);" },
  plugins: [
    {
      name: 'vendor-only',
      setup(b) {
        b.onResolve({ filter: /.*/ }, (args) => {
          if (args.kind === 'entry-point' || inside(args.importer)) return undefined;
          if (VENDORED.some((name) => args.path === name || args.path.startsWith(`${name}/`))) return undefined;
          return { path: args.path, external: true };
        });
      },
    },
  ],
});
console.log(`bundled ${VENDORED.join(' and ')} into ${entryPoints.length} modules`);
