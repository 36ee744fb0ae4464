/**
 * The farm module's health check: `@ha/checkers`' tcp checker (connect to host:port every
 * `intervalMs`, abandoned after `timeoutMs`, down after `failures` consecutive failures, up after
 * one success), seen by the farm as `up` / `down` events.
 */
import { EventEmitter } from 'eventemitter3';
import { tcpChecker, type Checker } from '@ha/checkers';
import type { ModuleLog } from '@ha/interface';

/** Configuration of a farm's {@link TcpCheck}. @public */
export interface TcpCheckInit {
  host: string;
  port: number;
  /** Default 1000 ms. */
  intervalMs?: number;
  /** Default 1000 ms. */
  timeoutMs?: number;
  /** Consecutive failures before `down` (default 2). */
  failures?: number;
}

/** A periodic tcp check (a `@ha/checkers` tcp checker) with `up` / `down` events. @public */
export class TcpCheck extends EventEmitter<{ up: []; down: [{ reason: string }] }> {
  readonly #checker: Checker;
  #healthy: boolean | undefined;
  #running = false;
  #op: Promise<void> = Promise.resolve();  // start/stop of the checker, one after the other
  constructor(readonly init: TcpCheckInit, log?: ModuleLog) {
    super();
    this.#checker = tcpChecker({
      host: init.host, port: init.port,
      intervalMs: init.intervalMs ?? 1000, timeoutMs: init.timeoutMs ?? 1000, failures: init.failures ?? 2,
    })(log ? { log } : {});
    this.#checker.on('change', (c) => {
      if (!this.#running) return;
      if (c.state === 'up' && this.#healthy !== true) { this.#healthy = true; this.emit('up'); }
      else if (c.state === 'down' && this.#healthy !== false) { this.#healthy = false; this.emit('down', { reason: `tcp ${init.host}:${init.port}: ${c.reason}` }); }
    });
  }
  get healthy(): boolean | undefined { return this.#healthy; }
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#op = this.#op.then(() => this.#checker.start()).catch(() => {});
  }
  stop(): void {
    this.#running = false;
    this.#healthy = undefined;
    this.#op = this.#op.then(() => this.#checker.stop()).catch(() => {});
  }
}
