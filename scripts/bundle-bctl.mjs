#!/usr/bin/env node
// bundle-bctl.mjs: `npm run build` runs this after tsc. It replaces
// dist/bin/bctl.js (tsc's one-line entry) with one ESM file that holds bctl,
// the spool library it uses and its CommonJS dependencies (mri,
// write-file-atomic, signal-exit ...), built from src/bin/bctl.ts.
//
// Why: bctl is a short-lived command, so its start is its cost. As separate
// files, `bctl submit` spent ~25 ms of a ~170 ms run (node -e 0: ~100 ms) on
// the module loader: resolving and reading some 20 ESM files and their
// package.json scopes, and running cjs-module-lexer over each CommonJS
// package to find its named exports. One file has none of that. spoold and
// workerd stay as tsc emits them (they start once), and so does the rest of
// dist/ (the tests and scripts/bench.mjs import dist/spool/*.js).
//
// The verbs stay lazy inside the bundle: main.ts imports each verb with
// import(), which esbuild turns into a function run on first use, and a
// bundled CommonJS package runs only when first required. cron-parser is
// loaded at run time by schedule.ts (createRequire), from node_modules.
//
// The banner gives the bundled CommonJS code what Node gives a CommonJS
// module: require (for node: builtins and cron-parser), __filename and
// __dirname (write-file-atomic hashes __filename into its temporary names).

import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

await build({
  absWorkingDir: ROOT,
  entryPoints: ['src/bin/bctl.ts'],
  outfile: 'dist/bin/bctl.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  tsconfig: 'tsconfig.build.json',
  sourcemap: true,          // replaces tsc's bctl.js.map; used with node --enable-source-maps
  legalComments: 'none',
  logLevel: 'warning',
  banner: {
    js: [
      "import { createRequire as __bctlCreateRequire } from 'node:module';",
      "import { fileURLToPath as __bctlFileURLToPath } from 'node:url';",
      'const require = __bctlCreateRequire(import.meta.url);',
      'const __filename = __bctlFileURLToPath(import.meta.url);',
      "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
    ].join('\n'),
  },
});
