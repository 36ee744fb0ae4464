import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { NftError } from './errors.js';

let nftPath: string | undefined;
/**
 * The absolute path of the system's `nft`, looked up in the system directories first: an npm
 * package (`@vercel/nft`) installs a `node_modules/.bin/nft` that npm scripts put first on PATH.
 * @internal
 */
export function nftBinary(): string {
  if (nftPath) return nftPath;
  nftPath = 'nft';
  for (const dir of ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin']) {
    try { accessSync(`${dir}/nft`, constants.X_OK); nftPath = `${dir}/nft`; break; } catch { /* next */ }
  }
  return nftPath;
}

/** Runs one `nft -f -` transaction (atomic: all or nothing). @throws {@link NftError} @internal */
export function nftApply(script: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(nftBinary(), ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (e) => { clearTimeout(timer); reject(new NftError(`cannot run nft (${(e as NodeJS.ErrnoException).code ?? e.message}); install nftables`, '', script)); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new NftError(signal ? `killed by ${signal} after ${timeoutMs} ms` : `exit ${code}`, stderr, script));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(script);
  });
}
