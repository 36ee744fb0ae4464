import test from 'ava';
import {
  PRESETS, deadline, effectiveSilence, isExpired, resolveTiming, stallFromTick, tickInterval,
} from '../src/timing.js';
import { isHaError } from '@ha/interface';

test('presets: default detects within 500 ms, fast within ~100 ms, lan = default, wan = reference', (t) => {
  t.deepEqual(PRESETS.default, { pulseMs: 50, timeoutMs: 300 });
  t.deepEqual(PRESETS.lan, PRESETS.default);
  t.deepEqual(PRESETS.fast, { pulseMs: 15, timeoutMs: 90 });
  t.deepEqual(PRESETS.wan, { pulseMs: 700, timeoutMs: 30_000 });
  for (const name of ['default', 'fast'] as const) {
    const p = PRESETS[name];
    // worst case: timeout + one check interval
    t.true(p.timeoutMs + tickInterval(p) <= (name === 'default' ? 500 : 110), name);
  }
});

const resolveTable: Array<[string, Parameters<typeof resolveTiming>[0], { pulseMs: number; timeoutMs: number } | string]> = [
  ['no options = default', {}, { pulseMs: 50, timeoutMs: 300 }],
  ['fast', { preset: 'fast' }, { pulseMs: 15, timeoutMs: 90 }],
  ['wan', { preset: 'wan' }, { pulseMs: 700, timeoutMs: 30_000 }],
  ['override pulse', { pulseMs: 20 }, { pulseMs: 20, timeoutMs: 300 }],
  ['override both', { preset: 'wan', pulseMs: 100, timeoutMs: 1000 }, { pulseMs: 100, timeoutMs: 1000 }],
  ['timeout exactly 3 pulses', { pulseMs: 10, timeoutMs: 30 }, { pulseMs: 10, timeoutMs: 30 }],
  ['unknown preset', { preset: 'turbo' }, 'preset'],
  ['pulse below 5', { pulseMs: 4 }, 'pulseMs'],
  ['pulse NaN', { pulseMs: Number.NaN }, 'pulseMs'],
  ['timeout below 3 pulses', { pulseMs: 50, timeoutMs: 149 }, 'timeoutMs'],
  ['timeout infinite', { timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs'],
];
for (const [title, input, expected] of resolveTable) {
  test(`resolveTiming: ${title}`, (t) => {
    if (typeof expected === 'string') {
      const err = t.throws(() => resolveTiming(input));
      t.true(isHaError(err, 'ERR_MEMBERSHIP_CONFIG'));
      t.is((err as unknown as { details: { field: string } }).details.field, expected);
      t.regex(err!.message, new RegExp(expected));
    } else {
      t.deepEqual(resolveTiming(input), expected);
    }
  });
}

test('tickInterval table', (t) => {
  const table: Array<[number, number, number]> = [
    // pulse, timeout, expected tick
    [50, 300, 50], [15, 90, 15], [700, 30_000, 700], [100, 300, 50], [5, 15, 2], [10, 30, 5],
  ];
  for (const [pulseMs, timeoutMs, tick] of table) t.is(tickInterval({ pulseMs, timeoutMs }), tick, `${pulseMs}/${timeoutMs}`);
});

test('stallFromTick table: jitter under grace ignored, beyond it the whole lateness counts', (t) => {
  const table: Array<[number, number, number, number]> = [
    // expected, actual, grace, stall
    [50, 50, 50, 0], [50, 99, 50, 0], [50, 100, 50, 0], [50, 101, 50, 51], [50, 550, 50, 500], [50, 20, 50, 0],
    [15, 40, 15, 25],
  ];
  for (const [e, a, g, s] of table) t.is(stallFromTick(e, a, g), s, `${e} ${a} ${g}`);
});

test('effectiveSilence / isExpired / deadline table (stall compensation)', (t) => {
  const table: Array<{ now: number; heard: number; stallNow: number; stallAt: number; timeout: number; silence: number; expired: boolean; deadline: number }> = [
    { now: 1000, heard: 800, stallNow: 0, stallAt: 0, timeout: 300, silence: 200, expired: false, deadline: 1100 },
    { now: 1101, heard: 800, stallNow: 0, stallAt: 0, timeout: 300, silence: 301, expired: true, deadline: 1100 },
    // we were stalled 500 ms since we last heard it: not its fault
    { now: 1400, heard: 800, stallNow: 700, stallAt: 200, timeout: 300, silence: 100, expired: false, deadline: 1600 },
    { now: 1601, heard: 800, stallNow: 700, stallAt: 200, timeout: 300, silence: 301, expired: true, deadline: 1600 },
    // a stall before we last heard it does not count
    { now: 1200, heard: 800, stallNow: 200, stallAt: 200, timeout: 300, silence: 400, expired: true, deadline: 1100 },
    // silence never negative
    { now: 900, heard: 800, stallNow: 1000, stallAt: 0, timeout: 300, silence: 0, expired: false, deadline: 2100 },
  ];
  for (const r of table) {
    t.is(effectiveSilence(r.now, r.heard, r.stallNow, r.stallAt), r.silence, JSON.stringify(r));
    t.is(isExpired(r.now, r.heard, r.timeout, r.stallNow, r.stallAt), r.expired, JSON.stringify(r));
    t.is(deadline(r.heard, r.timeout, r.stallNow, r.stallAt), r.deadline, JSON.stringify(r));
  }
});
