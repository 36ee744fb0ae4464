/**
 * The checkers of one module, with their rules: which states they run in (`when`), what a
 * resource going down does (`action`), and the restart policy. The host (the mirror module)
 * tells the set its phase and carries out the actions it asks for; the set makes sure only one
 * action runs at a time, applies `maxloop`/`loop_interval`, and holds the module in WAIT while a
 * `wait` resource is down. Every checker runs on its own timer: one that hangs or throws is
 * reported and does not block the others.
 */
import { EventEmitter } from 'eventemitter3';
import { HaError, nullLog, type ModuleLog } from '@ha/interface';
import type { Checker, CheckerFactory, CheckerFault, ResourceChange, ResourceStatus } from './checker.js';
import { restartVerdict, type RestartPolicyInit } from './restart-policy.js';

/**
 * What a resource going down does.
 * - `restart`: stop then start the application on this node (counts against `maxloop`).
 * - `stopstart`: stop the module here (the peer takes over), then start it again (as secondary).
 * - `stop`: stop the module on this node.
 * - `wait`: hold the module in WAIT (not serving) while the resource is down.
 * - `none`: only report.
 * @public
 */
export type CheckerAction = 'restart' | 'stopstart' | 'stop' | 'wait' | 'none';

/**
 * When a checker runs: `primary` while the application runs on this node (SafeKit class `prim`),
 * `always` while the module is started, whatever its state (class `both`, `pre`).
 * @public
 */
export type CheckerWhen = 'primary' | 'always';

/** One checker and its rule. @public */
export interface CheckerRule {
  checker: CheckerFactory;
  /** Default: `restart` for `primary` checkers, `wait` for `always` ones. */
  action?: CheckerAction;
  /** Default `primary`. */
  when?: CheckerWhen;
  /** Grace after the checker starts before a down resource triggers its action (ms, default 0). */
  graceMs?: number;
}

/** An action the set asks its host to carry out. @public */
export interface CheckerActionRequest {
  action: Exclude<CheckerAction, 'wait' | 'none'>;
  resource: string;
  reason: string;
  /** The restart policy turned a `restart`/`stopstart` into a `stop`. */
  escalated: boolean;
  /** Monotonic time (performance.now()) when the resource was seen down. */
  downAt: number;
}

/** Events of a checker set. @public */
export interface CheckerSetEvents {
  resource: [ResourceChange];
  fault: [CheckerFault];
  action: [CheckerActionRequest];
  /** The hold (a `wait` resource down) changed: reason, or undefined when released. */
  hold: [string | undefined];
}

/** Configuration of a checker set. @public */
export interface CheckerSetInit extends RestartPolicyInit {
  checkers: CheckerRule[];
}

/** The phase of the module on this node, as the set needs it. @public */
export type CheckerPhase = 'stopped' | 'started' | 'primary';

/** Two checkers have the same name. @public */
export class DuplicateCheckerError extends HaError {
  constructor(name: string) { super('ERR_DUPLICATE_CHECKER', `two checkers are named '${name}': give them distinct names`, { details: { name } }); }
}

interface Entry { rule: Required<Pick<CheckerRule, 'action' | 'when' | 'graceMs'>>; checker: Checker; running: boolean; startedAt: number }

/** The checkers of a module. @public */
export class CheckerSet extends EventEmitter<CheckerSetEvents> {
  readonly #entries: Entry[] = [];
  readonly #log: ModuleLog;
  #phase: CheckerPhase = 'stopped';
  #busy = false;
  #history: number[] = [];
  #hold: string | undefined;
  /** Carries out an action (set by the host). Resolves when done. */
  handler: ((req: CheckerActionRequest) => Promise<void>) | undefined;

  constructor(readonly init: CheckerSetInit, log: ModuleLog = nullLog()) {
    super();
    this.#log = log;
    const names = new Set<string>();
    for (const rule of init.checkers) {
      const checker = rule.checker({ log });
      if (names.has(checker.name)) throw new DuplicateCheckerError(checker.name);
      names.add(checker.name);
      const when = rule.when ?? 'primary';
      const e: Entry = { rule: { when, action: rule.action ?? (when === 'primary' ? 'restart' : 'wait'), graceMs: rule.graceMs ?? 0 }, checker, running: false, startedAt: 0 };
      checker.on('change', (c) => this.#onChange(e, c));
      checker.on('fault', (f) => this.emit('fault', f));
      this.#entries.push(e);
    }
  }

  get phase(): CheckerPhase { return this.#phase; }
  /** Reason the module is held in WAIT (a `wait` resource is down), if any. */
  get hold(): string | undefined { return this.#hold; }
  /** An action is being carried out. */
  get busy(): boolean { return this.#busy; }
  /** The checkers, by name. */
  get checkers(): Checker[] { return this.#entries.map((e) => e.checker); }

  status(): Array<ResourceStatus & { action: CheckerAction; when: CheckerWhen; running: boolean }> {
    return this.#entries.map((e) => ({ ...e.checker.status(), action: e.rule.action, when: e.rule.when, running: e.running }));
  }

  /** The module's phase changed: start/stop the checkers that run in it. */
  async setPhase(phase: CheckerPhase): Promise<void> {
    this.#phase = phase;
    await Promise.all(this.#entries.map(async (e) => {
      const want = phase === 'primary' || (phase === 'started' && e.rule.when === 'always');
      if (want && !e.running) {
        e.running = true;
        e.startedAt = performance.now();
        try { await e.checker.start(); } catch (err) {
          e.running = false;
          this.#log.error('checker:error', `checker ${e.checker.name} could not start: ${(err as Error).message}`);
        }
      } else if (!want && e.running) {
        e.running = false;
        await Promise.resolve(e.checker.stop()).catch((err: Error) => this.#log.error('checker:error', `checker ${e.checker.name} could not stop: ${err.message}`));
      }
    }));
    this.#updateHold();
  }

  /** Restarts the checkers of the primary phase (after the application was restarted). */
  async rearm(): Promise<void> {
    await Promise.all(this.#entries.filter((e) => e.running && e.rule.when === 'primary').map(async (e) => {
      await Promise.resolve(e.checker.stop()).catch(() => {});
      e.startedAt = performance.now();
      await Promise.resolve(e.checker.start()).catch((err: Error) => this.#log.error('checker:error', `checker ${e.checker.name} could not restart: ${err.message}`));
    }));
  }

  /** Stops every checker. */
  async stop(): Promise<void> { await this.setPhase('stopped'); }

  #updateHold(): void {
    const down = this.#entries.find((e) => e.running && e.rule.action === 'wait' && e.checker.state === 'down');
    const hold = down ? `resource ${down.checker.name} is down (${down.checker.status().reason})` : undefined;
    if (hold === this.#hold) return;
    this.#hold = hold;
    this.#log.log(hold ? 'warn' : 'info', 'checker:hold', hold ? `holding the module in WAIT: ${hold}` : 'no wait resource is down any more: releasing the hold');
    this.emit('hold', hold);
  }

  #onChange(e: Entry, c: ResourceChange): void {
    this.emit('resource', c);
    if (e.rule.action === 'wait') { this.#updateHold(); return; }
    if (c.state !== 'down' || !e.running || e.rule.action === 'none') return;
    const downAt = performance.now();
    if (downAt - e.startedAt < e.rule.graceMs) {
      this.#log.info('checker:grace', `${c.resource} is down within its start grace (${e.rule.graceMs} ms): no action yet`);
      setTimeout(() => { if (e.running && e.checker.state === 'down') this.#onChange(e, c); }, e.rule.graceMs - (downAt - e.startedAt)).unref();
      return;
    }
    if (this.#busy) { this.#log.info('checker:busy', `${c.resource} is down while an action is running: ignored`); return; }
    let action = e.rule.action;
    let reason = `${c.resource} is down: ${c.reason}`;
    let escalated = false;
    if (action === 'restart' || action === 'stopstart') {
      const v = restartVerdict(this.#history, Date.now(), this.init);
      this.#history = v.history;
      reason += `; ${v.reason}`;
      if (v.verdict === 'stop') { action = 'stop'; escalated = true; }
    }
    const req: CheckerActionRequest = { action, resource: c.resource, reason, escalated, downAt };
    this.#log.log(escalated || action !== 'restart' ? 'warn' : 'info', 'checker:action', `${action}: ${reason}`, { action, resource: c.resource, escalated });
    this.emit('action', req);
    const h = this.handler;
    if (!h) return;
    this.#busy = true;
    void h(req).catch((err: Error) => this.#log.error('checker:action-failed', `action ${action} for ${c.resource} failed: ${err.message}`)).finally(() => { this.#busy = false; });
  }
}

/** Creates a checker set (the mirror module's `checkers` option builds one). @public */
export function checkerSet(init: CheckerSetInit, log?: ModuleLog): CheckerSet {
  return new CheckerSet(init, log);
}
