/** The VIP component: probe, add, announce, remove. */
import { networkInterfaces } from 'node:os';
import { EventEmitter } from 'eventemitter3';
import { StatusGuard, nullLog, type ModuleLog, type Startable } from '@ha/interface';
import { resolveVipConfig, parseIPv4, type InterfaceAddress } from './address.js';
import { defaultProbeWindowMs, probe as arpProbe, gratuitousArp } from './arp.js';
import { AcquireAbortedError, InvalidOptionError, LocalAddressError } from './errors.js';
import { addAddress, deleteAddress, listAddresses, listInterfaces } from './iproute.js';
import type { Lifeline } from './lifeline.js';
import { defaultLabel, garpDelays } from './schedule.js';

/** Options of {@link vip}. @public */
export interface VipInit {
  /** The virtual IPv4 address, e.g. "198.18.0.100". */
  address: string;
  /** Interface to add it on; default: the interface whose subnet contains `address`. */
  interface?: string;
  /** Prefix length to add it with; default: the prefix of that subnet. */
  prefix?: number;
  /** How long the ARP probe waits for another host to answer, ms; default 20 with the native addon, 50 with arping. */
  probeTimeoutMs?: number;
  /**
   * How old a free result of {@link Vip.preProbe} may be for `acquire()` to use it instead of
   * probing again, ms; default 0 (never). The mirror sets it to its failure-detection timeout.
   */
  preProbeMaxAgeMs?: number;
  /** How many gratuitous ARPs to send after adding; default 4 (at 0, 20, 200, 1000 ms). */
  garpCount?: number;
  /** Interval between gratuitous ARPs, ms; default: the 0/20/200/1000 ms schedule. */
  garpIntervalMs?: number;
  /** How often to probe again while another host answers for the address, ms; default 1000. */
  retryIntervalMs?: number;
  /** Address label marking the VIP as ours (max 15 characters); default "<interface>:ha". */
  label?: string;
  /** On `start()`, remove a copy of the VIP (with our label) left on this node by a crashed run; default true. */
  removeStaleOnStart?: boolean;
}

/** Components of {@link vip}. @public */
export interface VipComponents {
  log?: ModuleLog;
  /** If given, the VIP is registered with it while held, so it is removed if this process dies. */
  lifeline?: Lifeline;
}

/** Events of a {@link Vip}. @public */
export interface VipEvents {
  /** The VIP was added (or found already present) and announced. */
  'vip:acquired': (e: { address: string; interface: string; probeMs: number; addMs: number }) => void;
  /** The VIP was removed (or was not present) on `release()`/`stop()`. */
  'vip:released': (e: { address: string; interface: string; removed: boolean }) => void;
  /** Another host answers for the address; `acquire()` keeps waiting. */
  'vip:conflict': (e: { address: string; interface: string; by: string }) => void;
}

/** A virtual IP on this node. @public */
export interface Vip extends Startable, EventEmitter<VipEvents> {
  readonly address: string;
  /** The interface (resolved by `validate()`; the configured one, or '' before). */
  readonly interface: string;
  /** The prefix length (resolved by `validate()`; 0 before if not configured). */
  readonly prefix: number;
  /**
   * Resolves the interface and prefix and checks them against this node's interfaces.
   * Called by `start()`.
   * @throws InvalidAddressError (ERR_VIP_INVALID_ADDRESS), NoSuchInterfaceError
   * (ERR_VIP_NO_SUCH_INTERFACE), NotInSubnetError (ERR_VIP_NOT_IN_SUBNET), InvalidPrefixError,
   * LocalAddressError (ERR_VIP_LOCAL_ADDRESS: the address is a fixed address of this node).
   */
  validate(): Promise<void>;
  /**
   * Probes the address now, ahead of a likely takeover (the current holder has gone silent), and
   * keeps the result: an `acquire()` within `preProbeMaxAgeMs` after a FREE result adds the
   * address without probing again. A result that finds the address answered is never reused (the
   * next acquire probes afresh). Never throws; failures are logged.
   */
  preProbe(): Promise<void>;
  /**
   * Sends gratuitous ARPs again for a held VIP (e.g. after a peer that may have answered for it
   * comes back), so no client keeps a stale cache entry. No-op when not held.
   */
  announce(): Promise<void>;
  /**
   * Probes the address (ARP, from 0.0.0.0); while another host answers, emits `vip:conflict`,
   * logs why and probes again every `retryIntervalMs`, until it is free or `signal` aborts
   * (rejects with AcquireAbortedError, ERR_VIP_ABORTED; so does `release()`/`stop()`).
   * Then registers it with the lifeline, adds it, sends the first gratuitous ARP (the others
   * follow in the background) and emits `vip:acquired`. Concurrent calls share one attempt.
   * If the address is already on the interface, it is kept and announced without a probe.
   */
  acquire(opts?: { signal?: AbortSignal }): Promise<void>;
  /** Stops a pending acquire, removes the VIP if present, emits `vip:released`. Idempotent. */
  release(): Promise<void>;
  /** True if the VIP is on the interface now. */
  held(): Promise<boolean>;
}

/**
 * Creates a VIP component.
 * @example
 * ```ts
 * const v = vip({ address: '198.18.0.100' })({ log, lifeline: ll })
 * await v.start()      // validates; removes a stale copy left by a crash
 * await v.acquire()    // probe, add, gratuitous ARP
 * await v.stop()       // removes it
 * ```
 * @public
 */
export function vip(init: VipInit): (components: VipComponents) => Vip {
  parseIPv4(init?.address, 'VIP address');
  const num = (k: keyof VipInit, min: number) => {
    const v = init[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < min)) {
      throw new InvalidOptionError(`VIP ${init.address}: ${k} must be a number >= ${min}, got ${JSON.stringify(v)}`, { details: { option: k, value: v } });
    }
  };
  num('probeTimeoutMs', 1); num('preProbeMaxAgeMs', 0); num('garpCount', 0); num('garpIntervalMs', 0); num('retryIntervalMs', 1);
  if (init.label !== undefined && (typeof init.label !== 'string' || init.label.length === 0 || init.label.length > 15)) {
    throw new InvalidOptionError(`VIP ${init.address}: label must be 1-15 characters, got ${JSON.stringify(init.label)}`);
  }
  return (components) => new VipImpl(init, components);
}

class VipImpl extends EventEmitter<VipEvents> implements Vip {
  readonly #guard: StatusGuard;
  readonly #log: ModuleLog;
  readonly #init: VipInit;
  readonly #lifeline: Lifeline | undefined;
  #iface: string;
  #prefix: number;
  #label: string | undefined;
  #acquiring: { promise: Promise<void>; abort: AbortController } | undefined;
  #garpTimers = new Set<NodeJS.Timeout>();
  #held = false;
  #op: Promise<unknown> = Promise.resolve();

  constructor(init: VipInit, components: VipComponents) {
    super();
    this.#init = init;
    this.#guard = new StatusGuard(`VIP ${init.address}`);
    this.#log = (components.log ?? nullLog()).child('vip');
    this.#lifeline = components.lifeline;
    this.#iface = init.interface ?? '';
    this.#prefix = init.prefix ?? 0;
    this.#label = init.label;
  }

  get address(): string { return this.#init.address; }
  get interface(): string { return this.#iface; }
  get prefix(): number { return this.#prefix; }
  get #owner(): string { return `vip:${this.address}`; }
  get #spec() { return { address: this.address, prefix: this.#prefix, interface: this.#iface }; }

  async validate(): Promise<void> {
    const interfaces = await listInterfaces();
    // The address already on an interface without our label: a fixed address of this node.
    for (const i of interfaces) {
      const a = i.addresses.find((x) => x.address === this.address);
      const ours = this.#init.label ?? defaultLabel(i.name);
      if (a !== undefined && a.label !== ours) {
        throw new LocalAddressError(`VIP ${this.address}: already configured on ${i.name} (label "${a.label ?? i.name}", not "${ours}"): ` +
          'it is a fixed address of this node or managed by something else; refusing to manage it', { details: { address: this.address, interface: i.name, label: a.label } });
      }
    }
    const r = resolveVipConfig(interfaces, this.#init);
    this.#iface = r.interface;
    this.#prefix = r.prefix;
    this.#label = this.#init.label ?? defaultLabel(r.interface);
    const present = await this.#present();
    if (present !== undefined && present.label !== this.#label) {
      throw new LocalAddressError(`VIP ${this.address}: already configured on ${this.#iface} (label "${present.label ?? this.#iface}", not "${this.#label}"): ` +
        'it is a fixed address of this node or managed by something else; refusing to manage it', { details: { address: this.address, interface: this.#iface, label: present.label } });
    }
  }

  async start(): Promise<void> {
    await this.#guard.start(async () => {
      await this.validate();
      this.#log.debug('vip:validated', `VIP ${this.address}/${this.#prefix} will go on ${this.#iface}`, this.#spec);
      if (this.#init.removeStaleOnStart !== false && (await this.#present()) !== undefined) {
        await deleteAddress(this.#spec);
        this.#log.warn('vip:stale-removed', `removed VIP ${this.address} from ${this.#iface}: a copy left by a previous run that did not stop cleanly`, this.#spec);
      }
    });
  }

  async stop(): Promise<void> {
    await this.#guard.stop(() => this.release());
  }

  acquire(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.#guard.assertStarted('acquire');
    if (this.#acquiring !== undefined) return this.#withSignal(this.#acquiring.promise, opts.signal);
    const abort = new AbortController();
    const promise = this.#serial(() => this.#acquire(abort.signal)).finally(() => {
      if (this.#acquiring?.abort === abort) this.#acquiring = undefined;
    });
    this.#acquiring = { promise, abort };
    if (opts.signal !== undefined) {
      if (opts.signal.aborted) abort.abort(opts.signal.reason);
      else opts.signal.addEventListener('abort', () => abort.abort(opts.signal!.reason), { once: true });
    }
    return promise;
  }

  async release(): Promise<void> {
    this.#pre = undefined;
    this.#acquiring?.abort.abort(new AcquireAbortedError(`VIP ${this.address}: acquire aborted by release()`));
    for (const t of this.#garpTimers) clearTimeout(t);
    this.#garpTimers.clear();
    await this.#serial(async () => {
      if (this.#iface === '' || this.#prefix === 0) return; // never validated: nothing can be ours
      const wasHeld = this.#held;
      const present = await this.#present();
      const removed = present !== undefined ? await deleteAddress({ ...this.#spec, prefix: present.prefix }) : false;
      this.#held = false;
      this.#lifeline?.update(this.#owner, undefined);
      if (removed || wasHeld) {
        this.#log.info('vip:released', `VIP ${this.address} ${removed ? 'removed from' : 'was already gone from'} ${this.#iface}`, { ...this.#spec, removed });
        this.emit('vip:released', { address: this.address, interface: this.#iface, removed });
      }
    });
  }

  async announce(): Promise<void> {
    if (!this.#held || this.#iface === '') return;
    this.#log.info('vip:announce', `re-announcing VIP ${this.address} on ${this.#iface} (gratuitous ARP)`, this.#spec);
    await this.#garp();
  }

  #pre: { promise: Promise<boolean | undefined>; at: number } | undefined;

  preProbe(): Promise<void> {
    if (this.#guard.status !== 'started' || this.#held || this.#iface === '') return Promise.resolve();
    const t0 = performance.now();
    const promise = arpProbe(this.#iface, this.address, this.#init.probeTimeoutMs ?? defaultProbeWindowMs()).then(
      (p) => {
        this.#log.info('vip:pre-probe', p.inUse
          ? `pre-probe: VIP ${this.address} is still answered by ${p.by}`
          : `pre-probe: VIP ${this.address} is not answered on ${this.#iface} (${Math.round(performance.now() - t0)} ms)`, { ...this.#spec, inUse: p.inUse, by: p.by });
        return !p.inUse;
      },
      (err: Error) => { this.#log.warn('vip:pre-probe', `pre-probe of ${this.address} failed: ${err.message}`, this.#spec); return undefined; });
    this.#pre = { promise, at: performance.now() };
    return promise.then(() => {});
  }

  /** A free pre-probe result fresh enough to use (consumed), else false. */
  async #takePreProbe(): Promise<number | false> {
    const pre = this.#pre;
    this.#pre = undefined;
    const maxAge = this.#init.preProbeMaxAgeMs ?? 0;
    if (!pre || maxAge <= 0) return false;
    const free = await pre.promise;
    const age = performance.now() - pre.at;
    return free === true && age <= maxAge ? age : false;
  }

  async held(): Promise<boolean> {
    if (this.#iface === '') return false;
    return (await this.#present()) !== undefined;
  }

  async #acquire(signal: AbortSignal): Promise<void> {
    const t0 = performance.now();
    const throwIfAborted = () => {
      if (signal.aborted) {
        const r: unknown = signal.reason;
        throw r instanceof AcquireAbortedError ? r : new AcquireAbortedError(`VIP ${this.address}: acquire aborted`, { cause: r });
      }
    };
    throwIfAborted();
    let probeMs = 0;
    // In-process check (getifaddrs), no `ip` process on the failover path.
    const already = Object.values(networkInterfaces()).some((l) => l?.some((a) => a.family === 'IPv4' && a.address === this.address)) ? true : undefined;
    const preAge = already === undefined ? await this.#takePreProbe() : false;
    if (preAge !== false) {
      this.#log.info('vip:probe', `using the pre-probe started ${Math.round(preAge)} ms ago (address free) instead of probing again`, this.#spec);
    } else if (already === undefined) {
      for (let attempt = 1; ; attempt++) {
        const tp = performance.now();
        const p = await arpProbe(this.#iface, this.address, this.#init.probeTimeoutMs ?? defaultProbeWindowMs());
        probeMs = performance.now() - tp; // as seen here (the probe's own window is p.ms)
        throwIfAborted();
        if (!p.inUse) break;
        const retry = this.#init.retryIntervalMs ?? 1000;
        this.#log.warn('vip:conflict', `not adding VIP ${this.address} on ${this.#iface}: host ${p.by} answers for it (probe ${attempt}); probing again in ${retry} ms`,
          { ...this.#spec, by: p.by, attempt });
        this.emit('vip:conflict', { address: this.address, interface: this.#iface, by: p.by ?? 'unknown' });
        await sleep(retry, signal);
        throwIfAborted();
      }
    }
    // Register first: if we die between the add and the registration, the VIP must still go.
    this.#lifeline?.update(this.#owner, { vips: [this.#spec] });
    const tAdd = performance.now();
    if (already === undefined) await addAddress({ ...this.#spec, ...(this.#label !== undefined ? { label: this.#label } : {}) });
    const addMs = performance.now() - tAdd;
    this.#held = true;
    const delays = garpDelays(this.#init.garpCount, this.#init.garpIntervalMs);
    const first = delays[0] === 0 ? delays.shift() : undefined;
    for (const d of delays) {
      const t = setTimeout(() => { this.#garpTimers.delete(t); void this.#garp(); }, d);
      t.unref();
      this.#garpTimers.add(t);
    }
    if (first !== undefined) await this.#garp();
    const fields = { ...this.#spec, probeMs: Math.round(probeMs * 10) / 10, addMs: Math.round(addMs * 10) / 10, totalMs: Math.round(performance.now() - t0) };
    this.#log.info('vip:acquired', already === undefined
      ? `VIP ${this.address}/${this.#prefix} added on ${this.#iface} after a free ${preAge !== false ? "pre-probe" : "probe"}; gratuitous ARP sent`
      : `VIP ${this.address} was already on ${this.#iface}; kept it and sent gratuitous ARP`, fields);
    this.emit('vip:acquired', { address: this.address, interface: this.#iface, probeMs: fields.probeMs, addMs: fields.addMs });
  }

  async #garp(): Promise<void> {
    try { await gratuitousArp(this.#iface, this.address); } catch (err) {
      this.#log.warn('vip:garp-failed', `gratuitous ARP for ${this.address} on ${this.#iface} failed: ${(err as Error).message}`, this.#spec);
    }
  }

  async #present(): Promise<InterfaceAddress | undefined> {
    return (await listAddresses(this.#iface)).find((a) => a.address === this.address);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#op.then(fn, fn);
    this.#op = next.catch(() => {});
    return next;
  }

  #withSignal(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (signal === undefined) return p;
    return Promise.race([p, new Promise<void>((_, reject) => {
      const fail = () => reject(new AcquireAbortedError(`VIP ${this.address}: acquire aborted`, { cause: signal.reason }));
      if (signal.aborted) fail(); else signal.addEventListener('abort', fail, { once: true });
    })]);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); }
    signal.addEventListener('abort', done, { once: true });
  });
}
