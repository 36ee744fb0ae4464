import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { sinkLog, type LogEntry, type ModuleLog } from '@ha/interface';

/**
 * The persistent module log: one JSON line per decision, appended to a file, also kept in a ring
 * of recent entries (for `ha state` / `ha logs`) and forwarded to an optional extra sink (the
 * embedding application's own logger, or stderr for the daemon).
 */
export class PersistentLog {
  readonly recent: LogEntry[] = [];
  #stream: WriteStream | undefined;
  readonly log: ModuleLog;

  constructor(readonly file: string | undefined, component: string, private readonly forward?: (e: LogEntry) => void, private readonly keep = 500) {
    if (file) {
      mkdirSync(dirname(file), { recursive: true });
      this.#stream = createWriteStream(file, { flags: 'a', mode: 0o640 });
      this.#stream.on('error', (err) => { this.forward?.({ ts: new Date().toISOString(), level: 'error', component: 'log', event: 'log:error', msg: `module log ${file} cannot be written: ${err.message}` }); });
    }
    this.log = sinkLog(component, (e) => this.write(e));
  }

  write(e: LogEntry): void {
    this.recent.push(e);
    if (this.recent.length > this.keep) this.recent.splice(0, this.recent.length - this.keep);
    this.#stream?.write(JSON.stringify(e) + '\n');
    this.forward?.(e);
  }

  close(): Promise<void> {
    const s = this.#stream;
    this.#stream = undefined;
    if (!s) return Promise.resolve();
    return new Promise((r) => s.end(r));
  }
}

/** One line for humans: `2026-11-22T01:02:03.456Z INFO  mirror state: PRIM -> ALONE: peer is not heard any more`. */
export function formatEntry(e: LogEntry): string {
  const { ts, level, component, event, msg, ...rest } = e;
  const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
  return `${ts} ${level.toUpperCase().padEnd(5)} ${component} ${event}: ${msg}${extra}`;
}
