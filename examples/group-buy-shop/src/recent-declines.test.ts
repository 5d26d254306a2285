import { describe, expect, it } from 'vitest';
import { RecentDeclines } from './recent-declines.js';

describe('RecentDeclines', () => {
  it('answers a click that arrived before the decline with the same card, and no other', () => {
    let now = 1000;
    const declines = new RecentDeclines({ holdMs: 20_000, clock: () => now });
    const heldClick = declines.now();
    now += 300;
    declines.record('ord_1', 'tok_no_funds', 'insufficient_funds');
    expect(declines.declinedSince('ord_1', 'tok_no_funds', heldClick)).toBe('insufficient_funds');
    // Another card, another order: not the declined click.
    expect(declines.declinedSince('ord_1', 'tok_ok', heldClick)).toBeUndefined();
    expect(declines.declinedSince('ord_2', 'tok_no_funds', heldClick)).toBeUndefined();
    // A click made after the decline is the student trying again: it pays.
    now += 1;
    expect(declines.declinedSince('ord_1', 'tok_no_funds', declines.now())).toBeUndefined();
  });

  it('forgets declines older than holdMs', () => {
    let now = 0;
    const declines = new RecentDeclines({ holdMs: 1000, clock: () => now });
    declines.record('ord_1', 'tok', 'insufficient_funds');
    now = 600;
    declines.record('ord_2', 'tok', 'insufficient_funds');
    now = 1500;
    declines.record('ord_3', 'tok', 'insufficient_funds');
    expect(declines.size).toBe(2);
    expect(declines.declinedSince('ord_1', 'tok', 0)).toBeUndefined();
    expect(declines.declinedSince('ord_2', 'tok', 0)).toBe('insufficient_funds');
  });

  it('refuses a holdMs that is not a positive number', () => {
    expect(() => new RecentDeclines({ holdMs: 0 })).toThrow('Expected `holdMs` to be a finite number > 0');
  });
});
