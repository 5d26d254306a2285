import { describe, expectTypeOf, it } from 'vitest';
import type { CallContext, CircuitBreakerStats, CircuitState, StateChange } from './index.js';
import { CircuitBreaker, circuitBreaker, circuitBreakerRegistry } from './index.js';

describe('types', () => {
  it('fire() takes the action arguments and resolves to its awaited result', () => {
    const charge = circuitBreaker(async (orderId: string, amount: number) => ({ orderId, amount }));
    expectTypeOf(charge.fire).parameters.toEqualTypeOf<[string, number]>();
    expectTypeOf(charge.fire('o1', 100)).toEqualTypeOf<Promise<{ orderId: string; amount: number }>>();
    const viaClass = new CircuitBreaker(async (n: number) => n * 2);
    expectTypeOf(viaClass.fire(2)).toEqualTypeOf<Promise<number>>();
    // @ts-expect-error wrong argument type
    void charge.fire(1, 100);
  });

  it('execute() hands the context and resolves to the function result', () => {
    const bank = circuitBreaker({ name: 'bank' });
    expectTypeOf(bank.execute((ctx) => Promise.resolve(ctx.signal.aborted))).toEqualTypeOf<
      Promise<boolean>
    >();
    expectTypeOf(bank.execute((ctx) => ctx.probe)).toEqualTypeOf<Promise<boolean>>();
    expectTypeOf<CallContext['signal']>().toEqualTypeOf<AbortSignal>();
    expectTypeOf(bank.execute(async () => 'x', { fallback: () => 'cached' })).toEqualTypeOf<
      Promise<string>
    >();
    // @ts-expect-error the fallback must produce the same type
    void bank.execute(async () => 'x', { fallback: () => 42 });
  });

  it('state, stats and events are typed', () => {
    const bank = circuitBreaker({ name: 'bank' });
    expectTypeOf(bank.state).toEqualTypeOf<CircuitState>();
    expectTypeOf(bank.stats()).toEqualTypeOf<CircuitBreakerStats>();
    bank.on('open', (change) => expectTypeOf(change).toEqualTypeOf<StateChange>());
    bank.on('throttled', (_value, latencyMs, retryAfterMs) => {
      expectTypeOf(latencyMs).toEqualTypeOf<number>();
      expectTypeOf(retryAfterMs).toEqualTypeOf<number>();
    });
    const registry = circuitBreakerRegistry({ maxBreakers: 10 });
    expectTypeOf(registry.execute('k', async () => 1)).toEqualTypeOf<Promise<number>>();
  });

  it('rejects unknown options at compile time', () => {
    // @ts-expect-error not an option
    circuitBreaker({ timeout: 1000 });
  });
});
