import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalGrants } from './local-grants.js';

describe('LocalGrants (which side a refund without operationId goes back to)', () => {
  it('gives each side back at most what it granted, whatever order the refunds come in', () => {
    // A story of outages: grants by Redis (outage 0: Redis answering) or by the local bucket of the
    // current outage, and refunds of some of them, each at most once, in any order. The store sends
    // `cost - local` to Redis and credits `live` to the local bucket of the outage going on.
    const step = fc.oneof(
      fc.record({ kind: fc.constant('grant' as const), cost: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ kind: fc.constant('toggle' as const) }),
      fc.record({ kind: fc.constant('refund' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const grants = new LocalGrants(100, Number.POSITIVE_INFINITY, () => 0);
        let outage = 0; // 0 while Redis answers
        let outages = 0;
        const unrefunded: { cost: number; outage: number }[] = [];
        const granted = new Map<number, number>(); // by outage (0 = Redis)
        const given = new Map<number, number>();
        const credit = (side: number, tokens: number) => given.set(side, (given.get(side) ?? 0) + tokens);
        for (const s of steps) {
          if (s.kind === 'toggle') {
            outages += outage === 0 ? 1 : 0;
            outage = outage === 0 ? outages : 0;
          } else if (s.kind === 'grant') {
            if (outage !== 0) grants.add('k', s.cost, outage, 0);
            granted.set(outage, (granted.get(outage) ?? 0) + s.cost);
            unrefunded.push({ cost: s.cost, outage });
          } else if (unrefunded.length > 0) {
            const [grant] = unrefunded.splice(s.pick % unrefunded.length, 1);
            const share = grants.take('k', grant?.cost ?? 0, outage);
            expect(share.live).toBeLessThanOrEqual(share.local);
            if (outage === 0) expect(share.live).toBe(0); // no local bucket is live
            credit(outage, share.live);
            if (outage === 0) credit(0, (grant?.cost ?? 0) - share.local); // what reaches Redis
          }
        }
        for (const [side, tokens] of given) {
          expect(tokens).toBeLessThanOrEqual(granted.get(side) ?? 0);
        }
      }),
    );
  });

  it("takes a refund off the current outage's grants first, then off earlier ones (never credited)", () => {
    const grants = new LocalGrants(10, 60_000, () => 0);
    grants.add('k', 3, 1, 0);
    grants.add('k', 4, 2, 0);
    expect(grants.take('k', 5, 2)).toEqual({ local: 5, live: 4 });
    expect(grants.take('k', 5, 2)).toEqual({ local: 2, live: 0 });
    expect(grants.size).toBe(0);
    // once the outage is over, nothing is live: the local part is only held back from Redis
    grants.add('k', 3, 3, 0);
    expect(grants.take('k', 2, 0)).toEqual({ local: 2, live: 0 });
    expect(grants.take('k', 2, 3)).toEqual({ local: 1, live: 1 });
  });

  it('forgets a grant holdMs after its tokens are ready', () => {
    let now = 1_000;
    const grants = new LocalGrants(10, 60_000, () => now);
    grants.add('k', 2, 1, 5_000); // a reservation, ready in 5 s
    grants.add('k', 1, 1, 0);
    now += 5_000 + 59_999;
    expect(grants.take('k', 1, 1)).toEqual({ local: 1, live: 1 });
    now += 1;
    expect(grants.take('k', 1, 1)).toEqual({ local: 0, live: 0 });
    expect(grants.size).toBe(0);
    // a grant after expiry starts afresh
    grants.add('k', 1, 1, 0);
    expect(grants.take('k', 5, 1)).toEqual({ local: 1, live: 1 });
  });

  it('keeps at most maxKeys keys, forgetting the least recently granted, and drops expired ones as it goes', () => {
    let now = 0;
    const grants = new LocalGrants(2, 1_000, () => now);
    grants.add('a', 1, 1, 0);
    grants.add('b', 1, 1, 0);
    grants.add('a', 1, 1, 0); // a is now the most recent
    grants.add('c', 1, 1, 0); // forgets b
    expect(grants.size).toBe(2);
    expect(grants.take('b', 1, 1).local).toBe(0);
    expect(grants.take('a', 5, 1).local).toBe(2);
    now = 2_000; // c expired: a new grant elsewhere clears it without waiting for the cap
    grants.add('d', 1, 1, 0);
    expect(grants.size).toBe(1);
    grants.clear();
    expect(grants.size).toBe(0);
  });
});
