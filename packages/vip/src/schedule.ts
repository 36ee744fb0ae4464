/** Pure timing maths of the VIP component. */

/** Default delays of the gratuitous ARPs after a takeover, ms. @public */
export const DEFAULT_GARP_DELAYS: readonly number[] = [0, 20, 200, 1000];

/**
 * The delays (ms after the address is added) at which gratuitous ARPs are sent.
 * - With `intervalMs`: `count` copies, `intervalMs` apart, the first at 0.
 * - Without: the first `count` of 0, 20, 200, 1000 ms, then doubling (2000, 4000, ...):
 *   quick copies for a lost first frame, one past the 1 s ARP locktime of older kernels.
 * @public
 */
export function garpDelays(count = DEFAULT_GARP_DELAYS.length, intervalMs?: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    if (intervalMs !== undefined) out.push(i * intervalMs);
    else out.push(DEFAULT_GARP_DELAYS[i] ?? 1000 * 2 ** (i - DEFAULT_GARP_DELAYS.length + 1));
  }
  return out;
}

/** The default address label for a VIP on `iface` ("eth0:ha"); labels are limited to 15 characters. @public */
export function defaultLabel(iface: string): string {
  return `${iface.slice(0, 12)}:ha`;
}
