/** @public */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** @public */
export type LogFields = Record<string, unknown>;

/** One structured line of a module log. @public */
export interface LogEntry {
  /** ISO-8601 time with milliseconds. */
  ts: string;
  level: LogLevel;
  /** The component that wrote it: 'membership', 'vip', 'mirror', ... */
  component: string;
  /** Short stable event name: 'member:down', 'state', 'vip:acquired', ... */
  event: string;
  /** What happened, what was decided and why, in words. */
  msg: string;
  [field: string]: unknown;
}

/**
 * The module log: every decision is written here with its reason.
 * `child(component)` returns a log that stamps entries with that component.
 * @public
 */
export interface ModuleLog {
  log(level: LogLevel, event: string, msg: string, fields?: LogFields): void;
  debug(event: string, msg: string, fields?: LogFields): void;
  info(event: string, msg: string, fields?: LogFields): void;
  warn(event: string, msg: string, fields?: LogFields): void;
  error(event: string, msg: string, fields?: LogFields): void;
  child(component: string): ModuleLog;
}

/** Receives every log entry. @public */
export type LogSink = (entry: LogEntry) => void;

function makeLog(component: string, sink: LogSink): ModuleLog {
  const log = (level: LogLevel, event: string, msg: string, fields: LogFields = {}) => {
    sink({ ts: new Date().toISOString(), level, component, event, msg, ...fields });
  };
  return {
    log,
    debug: (e, m, f) => log('debug', e, m, f),
    info: (e, m, f) => log('info', e, m, f),
    warn: (e, m, f) => log('warn', e, m, f),
    error: (e, m, f) => log('error', e, m, f),
    child: (c) => makeLog(c, sink),
  };
}

/** A log that writes one JSON line per entry to stderr (or a custom writer). @public */
export function consoleLog(component = 'ha', opts: { minLevel?: LogLevel; write?: (line: string) => void } = {}): ModuleLog {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const min = order[opts.minLevel ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  return makeLog(component, (e) => { if (order[e.level] >= min) write(JSON.stringify(e)); });
}

/** A log that keeps entries in memory (for tests and for `ha state`). @public */
export function memoryLog(component = 'ha', entries: LogEntry[] = []): ModuleLog & { entries: LogEntry[] } {
  return Object.assign(makeLog(component, (e) => { entries.push(e); }), { entries });
}

/** A log that drops everything. @public */
export function nullLog(): ModuleLog {
  return makeLog('null', () => {});
}

/** Builds a log from any sink (the persistent module log, a test's collector...). @public */
export function sinkLog(component: string, sink: LogSink): ModuleLog {
  return makeLog(component, sink);
}
