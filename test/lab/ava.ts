/** ava glue for lab tests (kept apart from index.ts so the demo and benchmarks can use the lab without ava). */
import anyTest, { type TestFn } from 'ava';
import { labSkipReason } from './index.js';

/**
 * `test` for lab tests. When the lab cannot run here, lab tests are registered as skipped and one
 * visible test says why; under CI (CI or HA_REQUIRE_LAB set) that test FAILS, so skipped lab tests can
 * never pass a CI run.
 */
export const labTest: TestFn = (() => {
  const reason = labSkipReason();
  if (!reason) return anyTest;
  anyTest(`[lab] skipped: ${reason}`, (t) => {
    if (process.env.CI || process.env.HA_REQUIRE_LAB) t.fail(`lab tests were skipped under CI: ${reason}`);
    else { t.log(reason); t.pass(); }
  });
  return anyTest.skip as unknown as TestFn;
})();

