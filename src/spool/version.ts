// version.ts: what --version prints (spoold, workerd, bctl). Kept equal to
// package.json's version by test/docs.test.ts. Imports nothing: bctl loads it
// at every start.

export const VERSION = '0.1.0';

/** The --version line of a program: its name, builder's version, and for the daemons the worker protocol they speak. */
export const versionLine = (prog: 'spoold' | 'workerd' | 'bctl', protocol?: number): string =>
  `${prog} (builder) ${VERSION}${protocol === undefined ? '' : `, worker protocol ${protocol}`}\n`;
