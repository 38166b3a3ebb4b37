// errors.ts: the one error type for environmental failures in the spool.
//
// A SpoolError carries a stable code, the file it is about, the line where
// that applies, and a hint that says what to do. Its message reads like a
// compiler's: "schedules/hello:3: unknown header 'platfrom'; known: ...".
// Programming errors (an unchecked id reaching paths.ts) are plain Errors
// and crash, as Postfix's msg_panic does.

export type SpoolErrorCode =
  | 'SPOOL_BAD_FILE'      // a job, schedule or result file that does not parse
  | 'SPOOL_BAD_NAME'      // a name, platform or id outside the allowed shape
  | 'SPOOL_BAD_VALUE'     // a header value (duration, cron, number) that does not parse
  | 'SPOOL_NOT_FOUND'     // no such job, schedule or result
  | 'SPOOL_EXISTS'        // would overwrite what a person or another process wrote
  | 'SPOOL_LOCKED'        // another spoold holds the spool
  | 'SPOOL_IO';           // the filesystem said no (ENOSPC, EACCES, EROFS ...)

export class SpoolError extends Error {
  readonly code: SpoolErrorCode;
  readonly path: string | undefined;
  readonly line: number | undefined;
  readonly hint: string | undefined;

  constructor(code: SpoolErrorCode, what: string, opts: { path?: string; line?: number; hint?: string; cause?: unknown } = {}) {
    const where = opts.path === undefined ? '' : opts.line === undefined ? `${opts.path}: ` : `${opts.path}:${opts.line}: `;
    super(`${where}${what}${opts.hint ? `; ${opts.hint}` : ''}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SpoolError';
    this.code = code;
    this.path = opts.path;
    this.line = opts.line;
    this.hint = opts.hint;
  }
}

/** Turn a Node fs error into a SpoolError that names the file and what to do. */
export function ioError(err: unknown, file: string, doing: string): SpoolError {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  const hints: Record<string, string> = {
    ENOSPC: 'no space left on the spool filesystem: free space and try again',
    EDQUOT: 'disk quota exceeded: free space and try again',
    EROFS: 'the spool filesystem is read-only: remount it read-write',
    EACCES: 'permission denied: run as the spool owner or a member of its group, and make the file readable to them (chmod g+r)',
    EPERM: 'operation not permitted: run as the spool owner or a member of its group',
    ENOENT: 'check the path; a directory on it may be missing',
    ENOTDIR: 'check the path; a part of it that should be a directory is a file',
  };
  return new SpoolError('SPOOL_IO', `${doing}: ${(err as Error)?.message ?? String(err)}`,
    { path: file, hint: hints[code] ?? '', cause: err });
}

export function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * s on one line of a terminal or a log: control characters, C0 and C1 (a
 * newline, an escape sequence in a file's name), written as \n or \xNN, so
 * that none can forge a second line or drive the terminal.
 */
export function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === '\n' ? '\\n' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}
