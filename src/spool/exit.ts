// exit.ts: exit statuses of spoold, workerd and bctl, named once.
// bctl.1, spoold.8 and workerd.8 list the same numbers.

export const EXIT_OK = 0;          // success; for observe/submit --wait: the job exited 0
export const EXIT_FAIL = 1;        // a failed operation, or a job that did not exit 0
export const EXIT_USAGE = 2;       // bad usage: unknown command or flag, missing argument
export const EXIT_TEMPFAIL = 75;   // EX_TEMPFAIL: spoold lost its lock; workerd --once: server gone
export const EXIT_CONFIG = 78;     // EX_CONFIG: workerd --once: bad configuration (token, platform)
