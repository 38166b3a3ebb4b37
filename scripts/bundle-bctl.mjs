#!/usr/bin/env node
// bundle-bctl.mjs: `npm run build` runs this after tsc. It writes
// dist/bin/bctl.cjs, one CommonJS file that holds bctl, the spoold library it
// uses and its dependencies (mri, cron-parser ...), built
// from src/bin/bctl.ts, and removes tsc's dist/bin/bctl.js, so there is one bctl.
//
// Why: bctl is a short-lived command, so its start is its cost. As separate
// files, `bctl submit` spent ~25 ms of a ~170 ms run (node -e 0: ~100 ms) on
// the module loader: resolving and reading some 20 ESM files and their
// package.json scopes, and running cjs-module-lexer over each CommonJS
// package to find its named exports. One file has none of that. CommonJS,
// not ESM: node 20 starts a CommonJS main file ~7 ms sooner (141 -> 134 ms
// for bctl submit, against 104 ms for node -e 0), which is why the file is
// .cjs (package.json says "type": "module"). spoold and workerd stay as tsc
// emits them (they start once), and so does the rest of dist/ (the tests and
// scripts/bench.mjs import dist/spool/*.js).
//
// The verbs stay lazy inside the bundle: main.ts imports each verb with
// import(), which esbuild turns into a function run on first use, and a
// bundled CommonJS package runs only when first required.
//
// In an ESM bundle esbuild keeps every `import ... from 'node:x'` as a static
// import at the top of the file, so all builtins any verb uses (crypto,
// stream/promises, os ...) would load at start, for every verb. The lazyRequire
// plugin turns each such import (but fs/promises and path) into a bundled
// CommonJS shim over process.getBuiltinModule(), which runs where the importing
// module runs: at start for main.ts and its static imports, on first use for a
// verb. proper-lockfile (fsck only; with graceful-fs and retry a quarter of
// the bundle) is required from node_modules the same way instead of bundled.
//
// import.meta.url (schedule.ts finds cron-parser with createRequire(import.meta.url))
// becomes the bundle's own URL, made once at start by the banner.

import { build } from 'esbuild';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const LAZY_PACKAGES = new Set(['proper-lockfile']);
// Left as static imports: bctl needs them at start anyway, and a shim costs a
// copy of the module's exports (esbuild's __toESM) in every importing module.
// Not node:fs: Node's ESM facade of a builtin reads every export, and fs's
// ReadStream/WriteStream getters then load the whole stream implementation.
const EAGER_BUILTINS = new Set(['node:fs/promises', 'node:path', 'fs/promises', 'path']);
const isBuiltin = (p) => p.startsWith('node:') || builtinModules.includes(p);

/**
 * A builtin -> `module.exports = process.getBuiltinModule(...)` (Node >= 20.16;
 * no require() to make, so no node:module at start); a LAZY_PACKAGES package ->
 * require() from dist/bin/. Each shim runs where its importer runs.
 */
const lazyRequire = {
  name: 'lazy-require',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      const req = args.kind === 'require-call';   // from bundled CommonJS code
      if (!req && args.kind !== 'import-statement') return undefined;
      if (isBuiltin(args.path) && (req || !EAGER_BUILTINS.has(args.path))) return { path: args.path, namespace: 'builtin' };
      if (!req && LAZY_PACKAGES.has(args.path)) return { path: args.path, namespace: 'package' };
      return undefined;
    });
    const shim = (contents) => ({ contents, loader: 'js' });
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => shim(`module.exports = process.getBuiltinModule(${JSON.stringify(args.path)});`));
    b.onLoad({ filter: /.*/, namespace: 'package' }, (args) => shim(`module.exports = process.getBuiltinModule('node:module').createRequire(__filename)(${JSON.stringify(args.path)});`));
  },
};

await build({
  plugins: [lazyRequire],
  absWorkingDir: ROOT,
  entryPoints: ['src/bin/bctl.ts'],
  outfile: 'dist/bin/bctl.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  tsconfig: 'tsconfig.build.json',
  sourcemap: true,          // used with node --enable-source-maps
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'import.meta.url': '__bctlUrl' },
  banner: { js: "const __bctlUrl = process.getBuiltinModule('node:url').pathToFileURL(__filename).href;" },
});
for (const f of ['bctl.js', 'bctl.js.map', 'bctl.d.ts']) fs.rmSync(path.join(ROOT, 'dist', 'bin', f), { force: true });
