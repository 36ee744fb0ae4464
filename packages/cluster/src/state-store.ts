import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HaError } from '@ha/interface';

/** What a node persists about a module, so that a restart (or a power loss) decides safely. */
export interface PersistedState {
  /** Data known to be up to date (the node was the only primary, or was stopped from ALONE). */
  uptodate: boolean;
  /** Last role held: '' (never), 'ALONE', 'PRIM', 'SECOND'. */
  lastRole: string;
  /** Primary epoch (see decide.ts). */
  epoch: number;
  /** Last incarnation used by this node's membership (kept strictly increasing). */
  incarnation: number;
  /** The state the module was in when this was written (for humans). */
  state: string;
  /** When this was written. */
  updatedAt: string;
}

export const INITIAL_STATE: PersistedState = { uptodate: false, lastRole: '', epoch: 0, incarnation: 0, state: 'STOP', updatedAt: '' };

/** The persisted state file was unreadable. @public */
export class StateFileError extends HaError {
  constructor(file: string, cause: unknown) {
    super('ERR_STATE_FILE', `state file ${file} is unreadable or corrupt (${(cause as Error)?.message ?? cause}); ` +
      'refusing to guess whether this node\'s data is up to date: fix or remove the file (removing it makes this node "not up to date")', { cause, details: { file } });
  }
}

/**
 * A small JSON file written atomically (write a temporary file, fsync, rename over, fsync the
 * directory), so a crash at any point leaves either the old or the new content.
 */
export class StateStore {
  readonly file: string;
  #current: PersistedState = { ...INITIAL_STATE };
  #chain: Promise<void> = Promise.resolve();

  constructor(dir: string, module: string) {
    this.file = join(dir, `${module}.state.json`);
  }

  get current(): Readonly<PersistedState> { return this.#current; }

  async load(): Promise<PersistedState> {
    await mkdir(dirname(this.file), { recursive: true });
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { this.#current = { ...INITIAL_STATE }; return this.#current; }
      throw new StateFileError(this.file, err);
    }
    try {
      const j = JSON.parse(text) as Partial<PersistedState>;
      if (typeof j.uptodate !== 'boolean' || typeof j.epoch !== 'number' || typeof j.lastRole !== 'string') throw new Error('missing fields');
      this.#current = { ...INITIAL_STATE, ...j };
    } catch (err) {
      throw new StateFileError(this.file, err);
    }
    return this.#current;
  }

  /** Merges `patch` and writes it durably; writes are serialised. */
  update(patch: Partial<PersistedState>): Promise<void> {
    this.#current = { ...this.#current, ...patch, updatedAt: new Date().toISOString() };
    const snapshot = JSON.stringify(this.#current, null, 2) + '\n';
    this.#chain = this.#chain.then(() => writeAtomic(this.file, snapshot));
    return this.#chain;
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const dh = await open(dirname(file), 'r');
  try { await dh.sync(); } finally { await dh.close(); }
}
