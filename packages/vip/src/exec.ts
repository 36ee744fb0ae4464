/** Running system commands (`ip`, `arping`) without a shell, with a timeout and clear errors. */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { CommandError } from './errors.js';

/** The outcome of a command that ran (whatever its exit code). @internal */
export interface RunResult { code: number; stdout: string; stderr: string }

const DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'];
const found = new Map<string, string>();

/**
 * The absolute path of a system binary (looked up once in the usual directories, so a
 * PATH without /sbin, common for services, still finds `ip`). Falls back to the bare name.
 * @internal
 */
export function which(name: string): string {
  const hit = found.get(name);
  if (hit !== undefined) return hit;
  let path = name;
  for (const dir of DIRS) {
    try { accessSync(`${dir}/${name}`, constants.X_OK); path = `${dir}/${name}`; break; } catch { /* next */ }
  }
  found.set(name, path);
  return path;
}

/**
 * Runs `cmd args` (no shell). Resolves with the exit code and output; rejects with
 * {@link CommandError} only if the command could not be run at all or timed out.
 * @internal
 */
export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  const file = which(cmd);
  const timeout = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) { resolve({ code: 0, stdout, stderr }); return; }
      const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string | null };
      if (typeof e.code === 'number') { resolve({ code: e.code, stdout, stderr }); return; }
      const line = `${file} ${args.join(' ')}`;
      if (e.killed === true || e.signal) {
        reject(new CommandError(`"${line}" did not finish within ${timeout} ms (killed with ${e.signal ?? 'SIGKILL'})`, { cause: err, details: { cmd: file, args } }));
      } else if (e.code === 'ENOENT') {
        reject(new CommandError(`"${cmd}" is not installed (looked in ${DIRS.join(', ')} and PATH); install ${cmd === 'arping' ? 'iputils-arping' : 'iproute2'}`, { cause: err, details: { cmd: file, args } }));
      } else {
        reject(new CommandError(`could not run "${line}": ${e.message}`, { cause: err, details: { cmd: file, args } }));
      }
    });
  });
}
