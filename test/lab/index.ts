/**
 * The test lab: a small network built only inside network namespaces that it creates.
 *
 * Layout: one "switch" namespace holding a bridge `br0`; one namespace per node and one for the
 * client, each joined to the bridge by a veth pair (`eth0` inside the node, `p<i>` on the bridge).
 * Addresses come from 198.18.0.0/24 (nodes .1, .2, ...; client .200; VIPs from .100). Nothing is
 * created or changed in the host's own namespace: veth pairs are created inside the switch
 * namespace and their peer is moved straight into the node's namespace.
 *
 * Every lab is torn down by `destroy()` (call it from `t.teardown`), and also, as a last resort,
 * when the test process exits; a lab left behind by a process that died is swept at the next
 * `createLab()` (namespace names carry the creating PID).
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const PREFIX = 'hal-';
export const LAB_SUBNET = '198.18.0.0';
export const LAB_PREFIX = 24;
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ExecResult { stdout: string; stderr: string; code: number }

/** Why lab tests cannot run here (not root, no `ip`), or undefined when they can. */
export function labSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'lab tests need Linux network namespaces';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'lab tests need root (ip netns); run them as root, as CI does';
  if (!['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].some((p) => existsSync(p))) return 'lab tests need iproute2 (`ip`)';
  return undefined;
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolveP, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 20_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      if (err && !opts.allowFail) {
        reject(new Error(`lab: \`${cmd} ${args.join(' ')}\` failed (${code}): ${String(stderr).trim() || err.message}`));
        return;
      }
      resolveP({ stdout: String(stdout), stderr: String(stderr), code });
    });
  });
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

export class LabHost {
  readonly children = new Set<ChildProcess>();
  constructor(
    readonly lab: Lab,
    /** Name for humans: node0, node1, client. */
    readonly name: string,
    /** The network namespace. */
    readonly ns: string,
    /** Address on the lab bridge. */
    readonly ip: string,
    /** The bridge-side port of this host's link (inside the switch namespace). */
    readonly port: string,
  ) {}

  readonly iface = 'eth0';

  /** Runs a command inside this host's namespace. Rejects on non-zero exit unless allowFail. */
  exec(cmd: string, args: string[] = [], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns, cmd, ...args], opts);
  }

  /**
   * Spawns a process inside this namespace. `ip netns exec` execs the command in place, so the
   * returned child's PID is the command's own PID (SIGKILL to it kills the command).
   * The child is tracked and killed by `destroy()`.
   */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Spawns a TypeScript file with Node (tsx, development conditions) inside this namespace. */
  spawnTs(file: string, args: string[] = [], opts: SpawnOptions & { binds?: Array<[source: string, target: string]> } = {}): ChildProcess {
    const { binds, ...rest } = opts;
    const argv = [process.execPath, '--conditions=development', '--import', 'tsx', file, ...args];
    if (!binds?.length) return this.spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, ...rest });
    return this.spawnWithBinds(binds, argv, { cwd: REPO_ROOT, ...rest });
  }

  /**
   * Spawns `argv` with private bind mounts: the lab's nodes share the host's filesystem, so a node
   * that must see its own copy of a path (a replicated directory: the same path on every node)
   * gets a bind of `source` over `target` in a mount namespace of its own (`ip netns exec` gives
   * each command one, with mounts not propagating back to the host). The command is exec'd in
   * place: the child's PID is the command's.
   */
  spawnWithBinds(binds: Array<[source: string, target: string]>, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const q = (x: string) => `'${x.replace(/'/g, "'\\''")}'`;
    const mounts = binds.map(([src, dst]) => `mount --bind ${q(src)} ${q(dst)}`).join(' && ');
    return this.spawn('sh', ['-c', `${mounts} && exec ${argv.map(q).join(' ')}`], opts);
  }

  /** Cuts this host's link at the bridge: its eth0 loses carrier. */
  async linkDown(): Promise<void> { await run('ip', ['-n', this.lab.switchNs, 'link', 'set', this.port, 'down']); }
  /** Restores this host's link at the bridge. */
  async linkUp(): Promise<void> { await run('ip', ['-n', this.lab.switchNs, 'link', 'set', this.port, 'up']); }

  /** The MAC address of this host's eth0. */
  async mac(): Promise<string> {
    const r = await this.exec('ip', ['-j', 'link', 'show', 'dev', this.iface]);
    return (JSON.parse(r.stdout) as Array<{ address: string }>)[0]!.address;
  }

  /** IPv4 addresses on eth0 (without prefix). */
  async addresses(): Promise<string[]> {
    const r = await this.exec('ip', ['-j', '-4', 'addr', 'show', 'dev', this.iface]);
    const j = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string }> }>;
    return j.flatMap((l) => l.addr_info.map((a) => a.local));
  }
}

export interface LabOptions {
  /** Number of node namespaces (default 2). */
  nodes?: number;
  /** Also create a client namespace (default true). */
  client?: boolean;
}

const live = new Set<Lab>();
let counter = 0;

export class Lab {
  readonly id: string;
  readonly switchNs: string;
  readonly nodes: LabHost[] = [];
  client!: LabHost;
  readonly prefix = LAB_PREFIX;
  #destroyed = false;

  constructor() {
    this.id = `${process.pid}-${counter++}`;
    this.switchNs = `${PREFIX}${this.id}-sw`;
  }

  /** A free lab address for a VIP: 198.18.0.(100+i). */
  vip(i = 0): string { return `198.18.0.${100 + i}`; }

  /** All namespaces of this lab. */
  namespaces(): string[] {
    return [this.switchNs, ...this.nodes.map((n) => n.ns), ...(this.client ? [this.client.ns] : [])];
  }

  async build(opts: LabOptions): Promise<void> {
    const n = opts.nodes ?? 2;
    await run('ip', ['netns', 'add', this.switchNs]);
    const sw = (...a: string[]) => run('ip', ['-n', this.switchNs, ...a]);
    await sw('link', 'set', 'lo', 'up');
    await sw('link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await sw('link', 'set', 'br0', 'up');
    const hosts: Array<[string, string, string]> = [];
    for (let i = 0; i < n; i++) hosts.push([`node${i}`, `n${i}`, `198.18.0.${i + 1}`]);
    if (opts.client ?? true) hosts.push(['client', 'c', '198.18.0.200']);
    for (const [i, [name, short, ip]] of hosts.entries()) {
      const ns = `${PREFIX}${this.id}-${short}`;
      const port = `p${i}`;
      await run('ip', ['netns', 'add', ns]);
      const host = new LabHost(this, name, ns, ip, port);
      if (name === 'client') this.client = host; else this.nodes.push(host);
      await sw('link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await sw('link', 'set', port, 'master', 'br0');
      await sw('link', 'set', port, 'up');
      const h = (...a: string[]) => run('ip', ['-n', ns, ...a]);
      await h('link', 'set', 'lo', 'up');
      await h('addr', 'add', `${ip}/${LAB_PREFIX}`, 'dev', 'eth0');
      await h('link', 'set', 'eth0', 'up');
    }
  }

  /** Kills every process started in the lab's namespaces, then deletes the namespaces. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    live.delete(this);
    const hosts = [...this.nodes, ...(this.client ? [this.client] : [])];
    const exits: Promise<void>[] = [];
    for (const h of hosts) {
      for (const c of h.children) {
        if (c.exitCode === null && c.signalCode === null && c.pid) {
          exits.push(new Promise((r) => { c.once('exit', () => r()); setTimeout(r, 2000); }));
          try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
        }
      }
    }
    await Promise.all(exits);
    for (const ns of this.namespaces()) {
      // Processes our tests started inside our namespaces (directly or as their children, e.g. a
      // lifeline or an application started by a script): end them by PID before deleting the namespace.
      const r = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      for (const pid of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    for (const ns of this.namespaces()) await run('ip', ['netns', 'del', ns], { allowFail: true });
  }

  /** Synchronous last-resort cleanup (process exit). */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const ns of this.namespaces()) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
        for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      } catch { /* no such ns */ }
    }
    for (const ns of this.namespaces()) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
    }
  }
}

let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', () => { for (const lab of live) lab.destroySync(); });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { for (const lab of live) lab.destroySync(); process.exit(130); });
  }
}

/** Deletes labs left behind by processes that no longer exist (their PID is in the name). */
export async function sweepStaleLabs(): Promise<string[]> {
  const swept: string[] = [];
  let names: string[] = [];
  try { names = readdirSync('/run/netns'); } catch { return swept; }
  for (const ns of names) {
    const m = /^hal-(\d+)-\d+-/.exec(ns);
    if (!m || pidAlive(Number(m[1]))) continue;
    const r = await run('ip', ['netns', 'pids', ns], { allowFail: true });
    for (const pid of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await run('ip', ['netns', 'del', ns], { allowFail: true });
    swept.push(ns);
  }
  return swept;
}

/** Builds a lab. On failure, whatever was built is torn down before the error is rethrown. */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const reason = labSkipReason();
  if (reason) throw new Error(reason);
  installExitHooks();
  await sweepStaleLabs();
  const lab = new Lab();
  live.add(lab);
  try {
    await lab.build(opts);
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}

/** Resolves when `predicate` returns true (polled every `everyMs`), rejects after `timeoutMs`. */
export async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Collects a child's stdout as JSON lines (non-JSON lines are kept as {raw}). */
export function jsonLines(child: ChildProcess): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { out.push({ raw: line }); }
    }
  });
  return out;
}
