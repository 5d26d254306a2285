import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError, RegistryClosedError, RegistryFullError } from './errors.js';
import { CircuitBreakerRegistry, circuitBreakerRegistry } from './registry.js';

const ok = () => Promise.resolve('ok');
const fail500 = () => Promise.reject(Object.assign(new Error('5xx'), { statusCode: 500 }));

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('CircuitBreakerRegistry', () => {
  it('creates one breaker per key on first use, named after the key, with the options given', async () => {
    const registry = circuitBreakerRegistry({ breaker: { volumeThreshold: 1 } });
    expect(registry.has('bank-a')).toBe(false);
    const a = registry.get('bank-a');
    expect(registry.get('bank-a')).toBe(a);
    expect(a.name).toBe('bank-a');
    await expect(registry.execute('bank-b', ok)).resolves.toBe('ok');
    await expect(registry.execute('bank-a', fail500)).rejects.toMatchObject({ statusCode: 500 });
    expect(a.state).toBe('open');
    expect(registry.get('bank-b').state).toBe('closed');
    expect(registry.size).toBe(2);
    expect(registry.stats().map((s) => [s.name, s.state])).toEqual([
      ['bank-a', 'open'],
      ['bank-b', 'closed'], // get() above made it the most recently used
    ]);
    registry.close();
  });

  it('takes per-key options from a function', () => {
    const registry = new CircuitBreakerRegistry({
      breaker: (key) => ({ timeoutMs: key.startsWith('slow') ? 30_000 : 1000 }),
    });
    expect(registry.get('slow-bank').name).toBe('slow-bank');
    registry.close();
  });

  it('is bounded: evicts the least recently used idle breaker, closed ones first', async () => {
    const registry = circuitBreakerRegistry({
      maxBreakers: 3,
      breaker: { volumeThreshold: 1, timeoutMs: false },
    });
    const a = registry.get('a');
    await registry.execute('b', fail500).catch(() => {}); // b is open
    registry.get('c');
    registry.get('a'); // a is now the most recent; LRU order: b, c, a
    registry.get('d'); // evicts c: the least recently used *closed* idle breaker (b is open)
    expect([...registry.keys()]).toEqual(['b', 'a', 'd']);
    expect(a.isShutdown).toBe(false);

    let release!: () => void;
    registry.get('a');
    registry.get('d');
    void registry.execute('a', () => new Promise<void>((resolve) => (release = resolve))).catch(() => {});
    void registry.execute('d', () => new Promise<void>(() => {})).catch(() => {});
    registry.get('e'); // only b is idle: evicted although open
    expect([...registry.keys()]).toEqual(['a', 'd', 'e']);
    void registry.execute('e', () => new Promise<void>(() => {})).catch(() => {});
    expect(() => registry.get('f')).toThrow(RegistryFullError);
    await expect(registry.execute('f', ok)).rejects.toMatchObject({
      code: 'ERR_REGISTRY_FULL',
      key: 'f',
      maxBreakers: 3,
    });
    release();
    await vi.advanceTimersByTimeAsync(0);
    registry.get('f');
    expect(registry.has('a')).toBe(false);
    registry.close();
  });

  it('delete() and close() shut the breakers down', async () => {
    const registry = circuitBreakerRegistry();
    const a = registry.get('a');
    expect(registry.delete('a')).toBe(true);
    expect(registry.delete('a')).toBe(false);
    expect(a.isShutdown).toBe(true);
    const b = registry.get('b');
    registry.close();
    expect(b.isShutdown).toBe(true);
    // before the fix: a plain TypeError with no code
    expect(() => registry.get('c')).toThrow(RegistryClosedError);
    expect(() => registry.get('c')).toThrow(
      expect.objectContaining({ code: 'ERR_REGISTRY_CLOSED', key: 'c' }),
    );
    await expect(registry.execute('d', ok)).rejects.toMatchObject({ code: 'ERR_REGISTRY_CLOSED', key: 'd' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('evicts nothing when the new breaker cannot be created', () => {
    const registry = circuitBreakerRegistry({
      maxBreakers: 2,
      breaker: (key) => (key === 'bad' ? { timeoutMs: -1 } : {}),
    });
    const a = registry.get('a');
    registry.get('b');
    expect(() => registry.get('bad')).toThrow(expect.objectContaining({ option: 'timeoutMs' }));
    expect(() => registry.get('')).toThrow(expect.objectContaining({ option: 'name', value: '' }));
    expect([...registry.keys()]).toEqual(['a', 'b']);
    expect(a.isShutdown).toBe(false);
    registry.close();
  });

  it('refuses a fallback from the breaker function too (it would never run), evicting nothing', () => {
    const registry = circuitBreakerRegistry({
      maxBreakers: 1,
      breaker: (key) => (key === 'with-fallback' ? ({ fallback: () => 'cached' } as never) : {}),
    });
    const a = registry.get('a');
    // before the fix: accepted, and silently never called
    expect(() => registry.get('with-fallback')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: 'breaker.fallback' }),
    );
    expect([...registry.keys()]).toEqual(['a']);
    expect(a.isShutdown).toBe(false);
    registry.close();
  });

  it('keeps the new breaker when closing the evicted one throws (a shutdown listener)', () => {
    const registry = circuitBreakerRegistry({ maxBreakers: 1 });
    registry.get('a').on('shutdown', () => {
      throw new Error('listener broke');
    });
    expect(() => registry.get('b')).toThrow('listener broke');
    expect([...registry.keys()]).toEqual(['b']);
    const b = registry.get('b');
    expect(registry.get('b')).toBe(b);
    registry.close();
  });

  it("warns of a classify bug from a registry breaker as a breaker does, once per key's breaker", async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const registry = circuitBreakerRegistry({
        breaker: { volumeThreshold: 2, classify: () => 'sucess' as 'success' },
      });
      await expect(registry.execute('bank-a', () => 'paid')).resolves.toBe('paid');
      await expect(registry.execute('bank-a', () => 'paid')).resolves.toBe('paid');
      expect(registry.get('bank-a').stats().totals.failures).toBe(2);
      expect(registry.get('bank-a').state).toBe('open');
      // Each key has a breaker of its own, which warns for itself.
      await expect(registry.execute('bank-b', () => 'paid')).resolves.toBe('paid');
      expect(warn.mock.calls.map(([w]) => w)).toEqual([
        expect.objectContaining({ code: 'ERR_INVALID_CLASSIFICATION', circuit: 'bank-a', value: 'sucess' }),
        expect.objectContaining({ code: 'ERR_INVALID_CLASSIFICATION', circuit: 'bank-b' }),
      ]);
      registry.close();
    } finally {
      warn.mockRestore();
    }
  });

  it('validates its options and the breaker options at construction', () => {
    expect(() => circuitBreakerRegistry({ maxBreakers: 0 })).toThrow(InvalidOptionError);
    expect(() => circuitBreakerRegistry({ breaker: { timeoutMs: -1 } })).toThrow(/`timeoutMs`/);
    expect(() => circuitBreakerRegistry({ breaker: { fallback: () => 1 } } as never)).toThrow(
      /`breaker.fallback`/,
    );
    expect(() => circuitBreakerRegistry({ max: 3 } as never)).toThrow(/`max`/);
    // null is a bad value, not "absent".
    expect(() => circuitBreakerRegistry({ maxBreakers: null } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: 'maxBreakers', value: null }),
    );
    expect(() => circuitBreakerRegistry({ breaker: null } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: 'breaker', value: null }),
    );
    expect(() => circuitBreakerRegistry({ breaker: { volumeThreshold: null } } as never)).toThrow(
      /`volumeThreshold`/,
    );
  });
});
