/**
 * A custom checker written in TypeScript: the application is healthy while its HTTP endpoint
 * answers 200 on `/health`, and unhealthy when an operator (or a test) drops a `maintenance`
 * file in its directory. It is an ordinary async function given to `customChecker()`: the SDK
 * runs it at an interval, with a timeout, and reports it if it hangs or throws.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { customChecker, type CheckerFactory } from '@ha/checkers';

export interface HealthCheckerInit {
  /** URL of the health endpoint, e.g. http://127.0.0.1:8080/health. */
  url: string;
  /** Directory watched for a `maintenance` file. */
  dir: string;
  intervalMs?: number;
  timeoutMs?: number;
}

export function healthChecker(init: HealthCheckerInit): CheckerFactory {
  return customChecker({
    name: 'health',
    intervalMs: init.intervalMs ?? 500,
    timeoutMs: init.timeoutMs ?? 1000,
    async check(signal) {
      if (existsSync(join(init.dir, 'maintenance'))) return { state: 'down', reason: `maintenance file in ${init.dir}` };
      const res = await fetch(init.url, { signal });
      await res.body?.cancel();
      return res.ok ? { state: 'up', reason: `${init.url} answers ${res.status}` } : { state: 'down', reason: `${init.url} answers ${res.status}` };
    },
  });
}
