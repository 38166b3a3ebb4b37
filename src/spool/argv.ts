// argv.ts: what mri would take silently on the command lines of bctl, spoold
// and workerd, found before mri reads them.
//
// mri makes the value of a boolean flag given with `=` an argument
// (`bctl submit P job.sh --wait=no` queued a second job, from a file named
// `no`), and reads a word that starts with one dash as a bundle of short
// flags, an unknown one taking the next argument as its value (`bctl submit P
// -x.sh` was -x -. -s -h, and -h printed the help and exited 0). Both are
// usage errors (exit 2), with a message that says what was meant.

import mri from 'mri';

export interface FlagNames {
  strings: string[];                // flags that take a value
  booleans: string[];               // flags that take none
  shorts: Record<string, string>;   // one-letter name -> long name
}

/** The first such problem in argv, as a message, or undefined. */
export function argvProblem(argv: string[], flags: FlagNames): string | undefined {
  // Flags that take a value, by long name: mri keeps only the first of `-s A --spool B`.
  const given = new Set<string>();
  const once = (name: string) => {
    if (!flags.strings.includes(name)) return undefined;
    if (given.has(name)) return `--${name} given more than once`;
    given.add(name);
    return undefined;
  };
  // An unknown long flag is the caller's to report too (mri's `unknown`), but
  // before the command word, which `--frob info` would take as its value; and
  // not beside --help, which is answered whatever else is given.
  let unknown: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;   // the rest are arguments
    const long = /^--([^=]+)(=[\s\S]*)?$/.exec(a);
    if (long) {
      const [, name, value] = long;
      if (name === 'help') help = true;
      if (!flags.strings.includes(name!) && !flags.booleans.includes(name!)) { unknown ??= `unknown option --${name}`; continue; }
      if (value !== undefined && !flags.strings.includes(name!)) return `option --${name} takes no value (${a})`;
      const twice = once(name!);
      if (twice) return twice;
      if (value === undefined && flags.strings.includes(name!)) i++;   // the next argument is its value
      continue;
    }
    if (!/^-[^-]/.test(a)) continue;
    const eq = a.indexOf('=');
    const letters = [...a.slice(1, eq < 0 ? undefined : eq)];   // -s=DIR: the value follows the =
    for (const [k, c] of letters.entries()) {
      const name = flags.shorts[c];
      if (name === 'help') help = true;
      if (name === undefined) {
        return letters.length > 1 ? `unknown option -${c} in ${a} (to name a file that starts with -, write ./${a})` : `unknown option -${c}`;
      }
      if (!flags.strings.includes(name)) continue;
      // -sDIR: getopt would take DIR as the value; mri reads it as more flags.
      if (k < letters.length - 1) return `option -${c} takes its value as the next argument: write -${c} ${letters.slice(k + 1).join('')}`;
      const twice = once(name);
      if (twice) return twice;
      if (eq < 0) i++;   // the next argument is its value
    }
  }
  return help ? undefined : unknown;
}

/**
 * The command line of a daemon (spoold, workerd): long flags that take one
 * value (`strings`) or none (`booleans`, help included), -s for --spool and
 * -h for --help, and arguments. Every usage problem goes to `usage` (which
 * exits 2): the checks above, an unknown flag, a flag given twice or without
 * its value. With --help, the flags are returned unchecked.
 */
export function daemonArgs(argv: string[], strings: string[], booleans: string[], usage: (msg: string) => never): mri.Argv {
  const problem = argvProblem(argv, { strings, booleans, shorts: { s: 'spool', h: 'help' } });
  if (problem) usage(problem);
  let unknown: string | undefined;
  const alias: Record<string, string | string[]> = { s: 'spool', h: 'help' };
  for (const f of [...strings, ...booleans]) if (f !== 'spool' && f !== 'help') alias[f] = [];   // declared, so strict mode knows them
  const a = mri(argv, { alias, string: strings, boolean: booleans, unknown: (f) => { unknown = f; } });
  // mri returns what unknown() returned (undefined) when it fires: check that first (DEPENDENCIES.md 6).
  if (unknown) usage(`unknown option ${unknown}`);
  if (a.help) return a;
  for (const k of strings) {
    if (Array.isArray(a[k])) usage(`--${k} given more than once`);
    if (a[k] === '') usage(`--${k} needs a value`);
  }
  return a;
}
