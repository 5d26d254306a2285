import { describe, expect, it } from 'vitest';
import { gate, keyedLimiter, tokenBucket } from './index.js';

// Real timers on purpose: only Node knows whether a timer holds the process open. Nothing here sleeps:
// every wait is cancelled by close() right after the check.
const refTimers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;

describe('keepAlive', () => {
  it('a waiting take holds the process open only with keepAlive', async () => {
    const before = refTimers();
    const quiet = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0 });
    const quietTake = quiet.take().catch(() => {});
    expect(refTimers()).toBe(before);
    const alive = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0, keepAlive: true });
    const aliveTake = alive.take().catch(() => {});
    expect(refTimers()).toBe(before + 1);
    quiet.close();
    alive.close();
    await Promise.all([quietTake, aliveTake]);
    expect(refTimers()).toBe(before);
  });

  it('applies to keyed reservations and gate waits too', async () => {
    const before = refTimers();
    const keyed = keyedLimiter({ capacity: 1, refillRate: 1, keepAlive: true });
    keyed.tryTake('k');
    const keyedTake = keyed.take('k').catch(() => {});
    const g = gate({ rate: 1, concurrency: 1, maxQueue: 5, maxWaitMs: 5000, keepAlive: true });
    const first = g.run(async () => 1);
    const second = g.run(async () => 2).catch(() => {});
    await first;
    await new Promise((resolve) => setImmediate(resolve)); // the second call takes the freed slot
    expect(refTimers()).toBe(before + 2);
    await keyed.close();
    await g.close();
    await Promise.all([keyedTake, second]);
    expect(refTimers()).toBe(before);
    expect(() => tokenBucket({ capacity: 1, refillRate: 1, keepAlive: 'yes' as never })).toThrow(
      '`keepAlive`',
    );
  });
});
