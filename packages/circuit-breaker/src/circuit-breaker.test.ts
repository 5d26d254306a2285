import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CallContext } from './call.js';
import type { StateChange } from './circuit-breaker.js';
import { CircuitBreaker, circuitBreaker } from './circuit-breaker.js';
import {
  CircuitBreakerError,
  CircuitOpenError,
  CircuitShutdownError,
  CircuitTimeoutError,
  InvalidClassificationError,
  InvalidOptionError,
} from './errors.js';
import type { CircuitBreakerOptions } from './options.js';

const gatewayError = (fields: Record<string, unknown>) => Object.assign(new Error('gateway'), fields);
const ok = () => Promise.resolve('ok');
const fail500 = () => Promise.reject(gatewayError({ statusCode: 500 }));
const swallow = (p: Promise<unknown>) => p.catch((error: unknown) => error);

/** A breaker without jitter, so open times are exact. */
function breaker(options: CircuitBreakerOptions<[], never> = {}) {
  const b = circuitBreaker({ resetJitter: 0, volumeThreshold: 4, resetTimeoutMs: 1000, ...options });
  const changes: StateChange[] = [];
  b.on('stateChange', (change) => changes.push(change));
  return { b, changes };
}

/** A call that stays in flight until the test decides, after `ms` of fake time if asked. */
function deferred<T = string>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const slowOk = (ms: number) => () => new Promise<string>((resolve) => setTimeout(() => resolve('slow'), ms));

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('closed → open', () => {
  it('opens when more than errorThresholdPercentage of the window failed, once volumeThreshold is reached', async () => {
    const { b, changes } = breaker({ volumeThreshold: 4, errorThresholdPercentage: 50 });
    await b.execute(ok);
    await swallow(b.execute(fail500));
    await swallow(b.execute(fail500)); // 2/3 failed, but only 3 calls < volumeThreshold 4
    expect(b.state).toBe('closed');
    await b.execute(ok); // 2/4 = 50%: not more than 50%
    expect(b.state).toBe('closed');
    await swallow(b.execute(fail500)); // 3/5 = 60%
    expect(b.state).toBe('open');
    expect(changes).toEqual([
      expect.objectContaining({
        from: 'closed',
        to: 'open',
        reason: 'failure-rate',
        openForMs: 1000,
        failureRate: 60,
      }),
    ]);
  });

  it('opens when the call that reaches volumeThreshold is a success over a failing window', async () => {
    const { b, changes } = breaker({ volumeThreshold: 10, errorThresholdPercentage: 50 });
    for (let i = 0; i < 9; i++) await swallow(b.execute(fail500)); // 9 calls < 10: not checked yet
    expect(b.state).toBe('closed');
    await b.execute(ok); // 9/10 = 90% failed, reached by a success
    expect(b.state).toBe('open');
    expect(changes).toEqual([expect.objectContaining({ reason: 'failure-rate', failureRate: 90 })]);
  });

  it('refuses at once with CircuitOpenError carrying retryAfterMs, without calling the function', async () => {
    const { b } = breaker({ volumeThreshold: 1 });
    await swallow(b.execute(fail500));
    vi.advanceTimersByTime(300);
    const fn = vi.fn(ok);
    const error = await swallow(b.execute(fn));
    expect(fn).not.toHaveBeenCalled();
    expect(error).toBeInstanceOf(CircuitOpenError);
    expect(error).toMatchObject({
      code: 'ERR_CIRCUIT_OPEN',
      retryAfterMs: 700,
      state: 'open',
      circuit: 'circuit',
    });
    expect(b.stats().totals.rejected).toBe(1);
    // Refusals in the same millisecond share one error; a later one carries a fresh retryAfterMs.
    expect(await swallow(b.execute(fn))).toBe(error);
    vi.advanceTimersByTime(200);
    expect(await swallow(b.execute(fn))).toMatchObject({ retryAfterMs: 500 });
    expect(b.stats().totals.rejected).toBe(3);
  });

  it('opens on the slow-call rate even when every call succeeds', async () => {
    const { b, changes } = breaker({
      volumeThreshold: 4,
      slowCallDurationMs: 100,
      slowCallThresholdPercentage: 50,
    });
    const run = async (fn: () => Promise<string>) => {
      const p = b.execute(fn);
      await vi.advanceTimersByTimeAsync(500);
      return p;
    };
    await run(slowOk(10));
    await run(slowOk(200));
    await run(slowOk(10));
    await run(slowOk(200)); // 2/4 slow = 50%: not more
    expect(b.state).toBe('closed');
    await run(slowOk(300)); // 3/5 = 60%
    expect(b.state).toBe('open');
    expect(changes[0]).toMatchObject({ reason: 'slow-call-rate', slowCallRate: 60, failureRate: 0 });
    expect(b.stats().totals).toMatchObject({ successes: 5, slow: 3 });
  });

  it('forgets failures that slid out of the window', async () => {
    const { b } = breaker({ volumeThreshold: 2, windowMs: 1000, windowBuckets: 10 });
    await swallow(b.execute(fail500));
    vi.advanceTimersByTime(1500);
    await b.execute(ok);
    await b.execute(ok);
    await swallow(b.execute(fail500)); // the first failure is gone: 1/3
    expect(b.state).toBe('closed');
    expect(b.stats().window).toMatchObject({ calls: 3, failures: 1, successes: 2 });
  });

  it('opens on a success when older successes slid out and left a failing window', async () => {
    const { b } = breaker({ volumeThreshold: 4, windowMs: 1000, windowBuckets: 10 });
    for (let i = 0; i < 6; i++) await b.execute(ok);
    vi.advanceTimersByTime(500);
    for (let i = 0; i < 5; i++) await swallow(b.execute(fail500));
    expect(b.state).toBe('closed'); // 5 failures in 11 calls
    vi.advanceTimersByTime(600); // the 6 successes leave the window
    await b.execute(ok); // 5 failures in 6 calls
    expect(b.state).toBe('open');
    // The same after a stats() read moved the window first (the slide is not lost on the reader).
    const { b: b2 } = breaker({ volumeThreshold: 4, windowMs: 1000, windowBuckets: 10 });
    for (let i = 0; i < 6; i++) await b2.execute(ok);
    vi.advanceTimersByTime(500);
    for (let i = 0; i < 5; i++) await swallow(b2.execute(fail500));
    vi.advanceTimersByTime(600);
    expect(b2.stats().window).toMatchObject({ calls: 5, failures: 5 });
    await b2.execute(ok);
    expect(b2.state).toBe('open');
  });

  it('does not count ignored outcomes, nor business answers as failures', async () => {
    const { b } = breaker({ volumeThreshold: 2 });
    for (let i = 0; i < 5; i++) {
      await swallow(b.execute(() => Promise.reject(gatewayError({ statusCode: 402 }))));
      await swallow(b.execute(() => Promise.reject(gatewayError({ code: 'ERR_RATE_LIMITED' }))));
    }
    expect(b.state).toBe('closed');
    expect(b.stats().totals).toMatchObject({ successes: 5, ignored: 5, failures: 0 });
    expect(b.stats().window.calls).toBe(5);
  });

  it('counts a resolved 5xx response as a failure but still resolves with it', async () => {
    const { b } = breaker({ volumeThreshold: 1 });
    await expect(b.execute(() => Promise.resolve({ statusCode: 503 }))).resolves.toEqual({ statusCode: 503 });
    expect(b.state).toBe('open');
  });

  it('uses a custom classifier', async () => {
    const { b } = breaker({ volumeThreshold: 1, classify: () => 'ignored' });
    await swallow(b.execute(fail500));
    expect(b.state).toBe('closed');
    const { b: b2 } = breaker({ volumeThreshold: 1, classify: () => 'failure' });
    await expect(b2.execute(ok)).resolves.toBe('ok');
    expect(b2.state).toBe('open');
  });
});

describe('a classify that misbehaves', () => {
  /** The warnings the breaker emitted, without printing them. */
  function warnings() {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    return {
      get errors() {
        return spy.mock.calls.map(([warning]) => warning);
      },
      restore: () => spy.mockRestore(),
    };
  }

  it('counts the call as a failure, its caller keeps its answer, and warns once per distinct value', async () => {
    const warned = warnings();
    try {
      let returned: unknown = 'sucess';
      const { b } = breaker({ name: 'bank', volumeThreshold: 100, classify: () => returned as 'success' });
      // before the fix: no warning, the typo silently turned every call into a failure
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      expect(warned.errors).toHaveLength(1);
      const [first] = warned.errors;
      expect(first).toBeInstanceOf(InvalidClassificationError);
      expect(first).toBeInstanceOf(CircuitBreakerError);
      expect(first).toMatchObject({
        name: 'InvalidClassificationError',
        code: 'ERR_INVALID_CLASSIFICATION',
        option: 'classify',
        circuit: 'bank',
        threw: false,
        value: 'sucess',
        message: expect.stringContaining('Expected `classify` of circuit `bank` to return'),
      });
      expect((first as Error).message).toContain('got `"sucess"` (string)');
      // The same bug again: counted, no second warning.
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      expect(warned.errors).toHaveLength(1);
      // Another bug (a missing return), then a boolean: one warning each.
      returned = undefined;
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      returned = true;
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      expect(warned.errors).toHaveLength(3);
      expect(warned.errors[1]).toMatchObject({ value: undefined, threw: false });
      expect((warned.errors[2] as Error).message).toContain('got `true` (boolean)');
      expect(b.stats().totals).toMatchObject({ calls: 5, failures: 5, successes: 0 });
      expect(b.inFlight).toBe(0);
    } finally {
      warned.restore();
    }
  });

  it('opens on misclassified calls as on failures: the safe side', async () => {
    const warned = warnings();
    try {
      const { b } = breaker({ volumeThreshold: 2, classify: () => 'sucess' as 'success' });
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      await expect(b.execute(ok)).resolves.toBe('ok');
      expect(b.state).toBe('open');
      expect(warned.errors).toHaveLength(1);
    } finally {
      warned.restore();
    }
  });

  it('warns of a classify that throws, with its error as cause; the caller keeps its answer', async () => {
    const warned = warnings();
    try {
      const bug = new TypeError("Cannot read properties of undefined (reading 'statusCode')");
      const { b } = breaker({
        name: 'bank',
        volumeThreshold: 100,
        classify: () => {
          throw bug;
        },
      });
      await expect(b.execute(ok)).resolves.toBe('ok');
      await expect(b.execute(fail500)).rejects.toMatchObject({ statusCode: 500 });
      // before the fix: nothing at all
      expect(warned.errors).toHaveLength(1);
      expect(warned.errors[0]).toMatchObject({
        code: 'ERR_INVALID_CLASSIFICATION',
        option: 'classify',
        threw: true,
        value: undefined,
        cause: bug,
      });
      expect((warned.errors[0] as Error).message).toBe(
        "`classify` of circuit `bank` threw TypeError: Cannot read properties of undefined (reading 'statusCode'); the call was counted as a failure",
      );
      expect(b.stats().totals).toMatchObject({ calls: 2, failures: 2 });
    } finally {
      warned.restore();
    }
  });

  it('warns of at most 8 distinct bugs, so a classify returning per-call data cannot flood', async () => {
    const warned = warnings();
    try {
      let status = 500;
      const { b } = breaker({ volumeThreshold: 1000, classify: () => status as unknown as 'success' });
      for (let i = 0; i < 20; i++) {
        status = 500 + i;
        await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      }
      expect(warned.errors).toHaveLength(8);
      expect(warned.errors.map((e) => (e as InvalidClassificationError).value)).toEqual([
        500, 501, 502, 503, 504, 505, 506, 507,
      ]);
      expect(b.stats().totals.failures).toBe(20);
    } finally {
      warned.restore();
    }
  });

  it('reaches the process as a warning a `warning` listener hears, not as an error', async () => {
    const heard: Error[] = [];
    const onWarning = (warning: Error) => heard.push(warning);
    process.on('warning', onWarning);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const { b } = breaker({ volumeThreshold: 100, classify: () => 'sucess' as 'success' });
      await expect(b.execute(() => 'paid')).resolves.toBe('paid');
      await new Promise<void>((resolve) => process.nextTick(resolve));
      expect(heard.map((w) => (w as InvalidClassificationError).code)).toEqual([
        'ERR_INVALID_CLASSIFICATION',
      ]);
    } finally {
      process.off('warning', onWarning);
      stderr.mockRestore();
    }
  });
});

describe('closed-state rules against a model (property)', () => {
  type Step = { kind: 'ok' | 'fail' | 'throttle' | 'ignore'; latencyMs: number; gapMs: number };
  const step = fc.record({
    kind: fc.constantFrom<Step['kind']>('ok', 'fail', 'throttle', 'ignore'),
    // Dense runs (gaps of 0) next to long pauses, so whole buckets of calls slide out of a busy window.
    latencyMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })),
    gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 700 })),
  });

  it('opens exactly when the window first holds enough calls with a failure or slow-call rate above its threshold', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { maxLength: 60 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        async (steps, volumeThreshold, errorThresholdPercentage, slowCallThresholdPercentage) => {
          const b = circuitBreaker({
            volumeThreshold,
            errorThresholdPercentage,
            slowCallThresholdPercentage,
            slowCallDurationMs: 100,
            windowMs: 1000,
            windowBuckets: 10,
            timeoutMs: false,
            resetTimeoutMs: 1_000_000,
          });
          // The model: every counted call with its end time; the window is the last 10 buckets of 100 ms.
          const counted: Array<{ end: number; bad: boolean; slow: boolean }> = [];
          let expectedOpenAt = -1;
          for (const [i, s] of steps.entries()) {
            vi.advanceTimersByTime(s.gapMs);
            const p = swallow(
              b.execute(
                () =>
                  new Promise((resolve, reject) =>
                    setTimeout(() => {
                      if (s.kind === 'ok') resolve('ok');
                      else if (s.kind === 'fail') reject(gatewayError({ statusCode: 502 }));
                      else if (s.kind === 'throttle') reject(gatewayError({ statusCode: 429 }));
                      else reject(gatewayError({ outcome: 'not_sent' }));
                    }, s.latencyMs),
                  ),
              ),
            );
            await vi.advanceTimersByTimeAsync(s.latencyMs);
            await p;
            if (expectedOpenAt !== -1) break;
            if (s.kind === 'ignore') {
              expect(b.state).toBe('closed');
              continue;
            }
            const now = performance.now(); // the breaker's clock, faked by vi.useFakeTimers()
            const slow = s.latencyMs > 100;
            counted.push({ end: now, bad: s.kind !== 'ok', slow });
            const oldest = (Math.floor(now / 100) - 9) * 100;
            const inWindow = counted.filter((c) => c.end >= oldest);
            const calls = inWindow.length;
            const failureRate = (inWindow.filter((c) => c.bad).length / calls) * 100;
            const slowRate = (inWindow.filter((c) => c.slow).length / calls) * 100;
            // Every counted outcome is judged on the window as it is then (old calls slid out included).
            const shouldOpen =
              calls >= volumeThreshold &&
              (failureRate > errorThresholdPercentage || slowRate > slowCallThresholdPercentage);
            expect(b.state, `step ${i}`).toBe(shouldOpen ? 'open' : 'closed');
            if (shouldOpen) expectedOpenAt = i;
          }
          b.close();
        },
      ),
      {
        numRuns: 150,
        examples: [
          // Three successes, then two failures half a window later (40%), then a success once the
          // successes slid out: 2 failures in 3 calls.
          [
            [
              { kind: 'ok', latencyMs: 0, gapMs: 0 },
              { kind: 'ok', latencyMs: 0, gapMs: 0 },
              { kind: 'ok', latencyMs: 0, gapMs: 0 },
              { kind: 'fail', latencyMs: 0, gapMs: 500 },
              { kind: 'fail', latencyMs: 0, gapMs: 0 },
              { kind: 'ok', latencyMs: 0, gapMs: 600 },
            ],
            2,
            50,
            50,
          ],
        ],
      },
    );
  });
});

describe('half-open', () => {
  async function openBreaker(options: CircuitBreakerOptions<[], never> = {}) {
    const made = breaker({ volumeThreshold: 1, ...options });
    await swallow(made.b.execute(fail500));
    expect(made.b.state).toBe('open');
    return made;
  }

  it('turns half-open after resetTimeoutMs and lets halfOpenMaxCalls probes through', async () => {
    const { b, changes } = await openBreaker({ halfOpenMaxCalls: 2, halfOpenSuccessThreshold: 2 });
    vi.advanceTimersByTime(999);
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(1);
    expect(b.state).toBe('half-open');
    expect(changes.at(-1)).toMatchObject({ from: 'open', to: 'half-open', reason: 'reset-timeout' });

    const probes = [deferred(), deferred()];
    const seen: boolean[] = [];
    const p1 = b.execute((ctx) => {
      seen.push(ctx.probe);
      return (probes[0] as ReturnType<typeof deferred>).promise;
    });
    expect(b.retryAfterMs).toBe(0); // one probe slot is still free
    const p2 = b.execute(() => (probes[1] as ReturnType<typeof deferred>).promise);
    expect(b.retryAfterMs).toBe(10_000); // every slot taken: the probes answer or time out within timeoutMs
    const refused = await swallow(b.execute(ok));
    expect(refused).toMatchObject({ code: 'ERR_CIRCUIT_OPEN', state: 'half-open', retryAfterMs: 10_000 });
    expect((refused as CircuitOpenError).retryAfterMs).toBeGreaterThan(0);
    expect(seen).toEqual([true]);

    probes[0]?.resolve('a');
    await p1;
    expect(b.state).toBe('half-open'); // 1 of the 2 successes needed
    probes[1]?.resolve('b');
    await p2;
    expect(b.state).toBe('closed');
    expect(b.retryAfterMs).toBe(0);
    expect(changes.at(-1)).toMatchObject({ from: 'half-open', to: 'closed', reason: 'half-open-success' });
    expect(b.stats().window.calls).toBe(0); // the window was forgotten
  });

  it('re-opens as soon as the success threshold cannot be reached, with a backed-off open time', async () => {
    const { b, changes } = await openBreaker({
      halfOpenMaxCalls: 3,
      halfOpenSuccessThreshold: 2,
      resetBackoffFactor: 2,
    });
    vi.advanceTimersByTime(1000);
    await b.execute(ok);
    await swallow(b.execute(fail500)); // 1 failure of 3: 2 successes still possible
    expect(b.state).toBe('half-open');
    await swallow(b.execute(fail500));
    expect(b.state).toBe('open');
    expect(changes.at(-1)).toMatchObject({
      from: 'half-open',
      to: 'open',
      reason: 'half-open-failure',
      openForMs: 2000,
    });
    expect(b.stats().consecutiveOpens).toBe(2);

    vi.advanceTimersByTime(2000);
    expect(b.state).toBe('half-open');
    await swallow(b.execute(fail500));
    await swallow(b.execute(fail500));
    expect(changes.at(-1)).toMatchObject({ to: 'open', openForMs: 4000 });
  });

  it('caps the backoff at maxResetTimeoutMs and starts over after closing', async () => {
    const { b, changes } = await openBreaker({
      halfOpenMaxCalls: 1,
      halfOpenSuccessThreshold: 1,
      resetBackoffFactor: 10,
      maxResetTimeoutMs: 5000,
    });
    vi.advanceTimersByTime(1000);
    await swallow(b.execute(fail500));
    expect(changes.at(-1)).toMatchObject({ to: 'open', openForMs: 5000 });
    vi.advanceTimersByTime(5000);
    await b.execute(ok);
    expect(b.state).toBe('closed');
    await swallow(b.execute(fail500));
    expect(changes.at(-1)).toMatchObject({ to: 'open', openForMs: 1000 });
  });

  it('a slow probe counts against closing', async () => {
    const { b, changes } = await openBreaker({
      halfOpenMaxCalls: 1,
      halfOpenSuccessThreshold: 1,
      slowCallDurationMs: 100,
    });
    vi.advanceTimersByTime(1000);
    const p = b.execute(slowOk(200));
    await vi.advanceTimersByTimeAsync(200);
    await expect(p).resolves.toBe('slow');
    expect(changes.at(-1)).toMatchObject({ from: 'half-open', to: 'open', reason: 'half-open-slow' });
  });

  it('never takes an ignored outcome for a successful probe, and frees its slot', async () => {
    const { b } = await openBreaker({ halfOpenMaxCalls: 1, halfOpenSuccessThreshold: 1 });
    vi.advanceTimersByTime(1000);
    await swallow(b.execute(() => Promise.reject(gatewayError({ statusCode: 409 }))));
    expect(b.state).toBe('half-open');
    const controller = new AbortController();
    const aborted = b.execute(
      ({ signal }) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
        ),
      { signal: controller.signal },
    );
    controller.abort(new Error('shopper left'));
    await swallow(aborted);
    expect(b.state).toBe('half-open');
    await b.execute(ok); // the slot is free again: this probe closes the breaker
    expect(b.state).toBe('closed');
    expect(b.stats().totals.ignored).toBe(2);
  });

  it('does not count outcomes of calls admitted before the breaker opened as probes', async () => {
    const { b } = breaker({
      volumeThreshold: 1,
      halfOpenMaxCalls: 1,
      halfOpenSuccessThreshold: 1,
      timeoutMs: false,
    });
    const old = deferred();
    const pOld = b.execute(() => old.promise);
    await swallow(b.execute(fail500));
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(1000);
    expect(b.state).toBe('half-open');
    old.resolve('late');
    await pOld;
    expect(b.state).toBe('half-open');
  });

  it('a probe that times out re-opens the breaker', async () => {
    const { b, changes } = await openBreaker({
      halfOpenMaxCalls: 1,
      halfOpenSuccessThreshold: 1,
      timeoutMs: 200,
    });
    vi.advanceTimersByTime(1000);
    const p = swallow(b.execute(() => new Promise(() => {})));
    await vi.advanceTimersByTimeAsync(200);
    expect(await p).toBeInstanceOf(CircuitTimeoutError);
    expect(changes.at(-1)).toMatchObject({ from: 'half-open', to: 'open' });
  });
});

describe('half-open refusals', () => {
  it('wait for the last probe, by its own per-call timeout', async () => {
    const { b } = breaker({ timeoutMs: 100, halfOpenMaxCalls: 1, halfOpenSuccessThreshold: 1 });
    b.trip(50);
    vi.advanceTimersByTime(50);
    expect(b.state).toBe('half-open');
    const probe = b.execute(slowOk(1000), { timeoutMs: 5000 });
    const at0 = (await swallow(b.execute(ok))) as CircuitOpenError;
    // before the fix: 100 (the breaker's timeoutMs), then 1 ms over and over while the probe ran
    expect(at0).toMatchObject({ state: 'half-open', retryAfterMs: 5000 });
    vi.advanceTimersByTime(300);
    expect(b.retryAfterMs).toBe(4700);
    await vi.advanceTimersByTimeAsync(700);
    await expect(probe).resolves.toBe('slow');
    expect(b.state).toBe('closed');
    b.close();
  });
});

describe('half-open refusals behind a probe with no timeout', () => {
  it('ask for a reset period once the probe is past its estimate, never 1 ms over and over', async () => {
    const { b } = breaker({ timeoutMs: false, halfOpenMaxCalls: 1, halfOpenSuccessThreshold: 1 });
    b.trip(50);
    vi.advanceTimersByTime(50);
    const probe = b.execute(() => new Promise<never>(() => {}));
    expect(await swallow(b.execute(ok))).toMatchObject({ state: 'half-open', retryAfterMs: 1000 });
    vi.advanceTimersByTime(1500); // past the estimate (resetTimeoutMs), the probe still hangs
    // before the fix: 1, and 1 again for as long as the probe hung
    expect(await swallow(b.execute(ok))).toMatchObject({ state: 'half-open', retryAfterMs: 1000 });
    expect(b.retryAfterMs).toBe(1000);
    b.close();
    await swallow(probe);
  });

  it('but 1 ms past a timed probe’s deadline, whose timer is only running late', async () => {
    let now = 0;
    const b = circuitBreaker({
      resetJitter: 0,
      resetTimeoutMs: 30_000,
      timeoutMs: 100,
      halfOpenMaxCalls: 1,
      clock: () => now,
    });
    b.trip(50);
    now = 50;
    vi.advanceTimersByTime(50);
    expect(b.state).toBe('half-open');
    const probe = b.execute(() => new Promise<never>(() => {}));
    now = 155; // past the probe's deadline (150); its timeout timer has not run yet
    expect(b.retryAfterMs).toBe(1);
    b.close();
    await swallow(probe);
  });
});

describe('Retry-After', () => {
  const throttled = (retryAfterMs: number) => () =>
    Promise.reject(gatewayError({ statusCode: 429, retryAfterMs }));

  it('throttled answers open the breaker for at least the Retry-After asked, even beyond resetTimeoutMs', async () => {
    const { b, changes } = breaker({ volumeThreshold: 2, resetTimeoutMs: 1000 });
    await swallow(b.execute(throttled(5000)));
    await swallow(b.execute(throttled(2000)));
    expect(b.state).toBe('open');
    expect(changes[0]).toMatchObject({ reason: 'failure-rate', openForMs: 5000 });
    expect(b.stats().totals.throttled).toBe(2);
    vi.advanceTimersByTime(4999);
    expect(b.state).toBe('open');
    expect(await swallow(b.execute(ok))).toMatchObject({ retryAfterMs: 1 });
    vi.advanceTimersByTime(1);
    expect(b.state).toBe('half-open');
  });

  it('a throttled probe re-opens at once for the Retry-After', async () => {
    const { b, changes } = breaker({ volumeThreshold: 1, halfOpenMaxCalls: 3, halfOpenSuccessThreshold: 1 });
    await swallow(b.execute(fail500));
    vi.advanceTimersByTime(1000);
    await swallow(b.execute(throttled(8000)));
    expect(changes.at(-1)).toMatchObject({
      from: 'half-open',
      to: 'open',
      reason: 'throttled',
      openForMs: 8000,
    });
  });

  it('a late throttled answer extends the hold of an open breaker', async () => {
    const { b } = breaker({ volumeThreshold: 1, timeoutMs: false });
    const inFlight = deferred();
    const late = swallow(b.execute(() => inFlight.promise));
    await swallow(b.execute(fail500)); // open for 1000 ms
    vi.advanceTimersByTime(500);
    inFlight.reject(gatewayError({ statusCode: 503, retryAfterMs: 3000 }));
    await late;
    vi.advanceTimersByTime(600);
    expect(b.state).toBe('open'); // opossum's timer fired at 1000 ms and was re-armed
    expect(b.stats().retryAfterMs).toBe(2400); // 500 + 3000 - 1100
    vi.advanceTimersByTime(2399);
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(1);
    expect(b.state).toBe('half-open');
  });

  it('caps a Retry-After hold at maxResetTimeoutMs', async () => {
    const { b, changes } = breaker({ volumeThreshold: 1, maxResetTimeoutMs: 60_000 });
    await swallow(b.execute(throttled(3_600_000)));
    expect(changes[0]?.openForMs).toBe(60_000);
  });
});

describe('jittered open time', () => {
  it('stays within [resetTimeoutMs * (1 - resetJitter), resetTimeoutMs], and Retry-After holds are never shortened', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 20_000 }),
        async (r, jitter, retryAfterMs) => {
          const b = circuitBreaker({
            volumeThreshold: 1,
            resetTimeoutMs: 10_000,
            resetJitter: jitter,
            random: () => r,
          });
          const opened: StateChange[] = [];
          b.on('open', (change) => opened.push(change));
          await swallow(b.execute(() => Promise.reject(gatewayError({ statusCode: 429, retryAfterMs }))));
          const openFor = opened[0]?.openForMs as number;
          expect(openFor).toBeGreaterThanOrEqual(10_000 * (1 - jitter) - 1e-9);
          expect(openFor).toBeGreaterThanOrEqual(Math.min(retryAfterMs, 300_000));
          expect(openFor).toBeLessThanOrEqual(
            Math.max(10_000, Math.min(300_000, retryAfterMs * (1 + jitter))) + 1e-9,
          );
          b.close();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('spreads instances that opened together', async () => {
    const randoms = [0, 0.5, 0.999];
    const times: number[] = [];
    for (const r of randoms) {
      const b = circuitBreaker({
        volumeThreshold: 1,
        resetTimeoutMs: 10_000,
        resetJitter: 0.2,
        random: () => r,
      });
      b.on('open', (change) => times.push(change.openForMs));
      await swallow(b.execute(fail500));
      b.close();
    }
    expect(times).toEqual([10_000, 9000, 10_000 * (1 - 0.2 * 0.999)]);
  });
});

describe('cancellation', () => {
  it("one call's timeout aborts only that call's signal", async () => {
    const { b } = breaker({ timeoutMs: 1000 });
    const signals: AbortSignal[] = [];
    const second = deferred();
    const hang = (ctx: CallContext) => {
      signals.push(ctx.signal);
      return new Promise<string>(() => {});
    };
    const p1 = swallow(b.execute(hang));
    vi.advanceTimersByTime(500);
    const p2 = b.execute((ctx) => {
      signals.push(ctx.signal);
      return second.promise;
    });
    await vi.advanceTimersByTimeAsync(500);
    const error = await p1;
    expect(error).toBeInstanceOf(CircuitTimeoutError);
    expect(error).toMatchObject({ code: 'ERR_CIRCUIT_TIMEOUT', timeoutMs: 1000, name: 'TimeoutError' });
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[0]?.reason).toBe(error);
    expect(signals[1]?.aborted).toBe(false);
    second.resolve('fine');
    await expect(p2).resolves.toBe('fine');
    expect(b.stats().totals).toMatchObject({ timeouts: 1, successes: 1 });
  });

  it('times out calls started in a burst in order, with one timer', async () => {
    const { b } = breaker({ timeoutMs: 100, volumeThreshold: 1000 });
    const results: unknown[] = [];
    for (let i = 0; i < 50; i++) {
      void swallow(b.execute(() => new Promise(() => {}))).then((e) => results.push(e));
      vi.advanceTimersByTime(1);
    }
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(results).toHaveLength(50);
    expect(results.every((e) => e instanceof CircuitTimeoutError)).toBe(true);
    expect(b.inFlight).toBe(0);
  });

  it('a timeout listener that throws leaves no other due call pending, and the timer re-arms', async () => {
    const { b } = breaker({ timeoutMs: 100, volumeThreshold: 1000 });
    let thrown = 0;
    b.on('timeout', () => {
      thrown++;
      if (thrown === 1) throw new Error('listener boom');
    });
    const hang = () => new Promise<never>(() => {});
    const results: unknown[] = [];
    const track = (p: Promise<unknown>) => void swallow(p).then((e) => results.push(e));
    track(b.execute(hang));
    track(b.execute(hang));
    vi.advanceTimersByTime(50);
    track(b.execute(hang)); // due at 150: needs the timer re-armed after the throw
    expect(() => vi.advanceTimersByTime(50)).toThrow('listener boom');
    await vi.advanceTimersByTimeAsync(0);
    expect(results).toHaveLength(2);
    expect(b.inFlight).toBe(1);
    await vi.advanceTimersByTimeAsync(50);
    expect(results).toHaveLength(3);
    expect(results.every((e) => e instanceof CircuitTimeoutError)).toBe(true);
    expect(b.inFlight).toBe(0);
    expect(thrown).toBe(3);
  });

  it('an abort listener that shuts the breaker down as its call times out settles that call once', async () => {
    const { b } = breaker({ timeoutMs: 100 });
    const result = swallow(
      b.execute(({ signal }) => {
        signal.addEventListener('abort', () => b.close());
        return new Promise<never>(() => {});
      }),
    );
    vi.advanceTimersByTime(100);
    expect(await result).toBeInstanceOf(CircuitShutdownError);
    // before the fix: -1, the call settled by close() and then again as a timeout
    expect(b.inFlight).toBe(0);
    expect(b.stats().totals.timeouts).toBe(0);
  });

  it('an abort listener that shuts the breaker down ends a timeout sweep of several due calls', async () => {
    const { b } = breaker({ timeoutMs: 100 });
    const results = Array.from({ length: 3 }, () =>
      swallow(
        b.execute(({ signal }) => {
          signal.addEventListener('abort', () => b.close());
          return new Promise<never>(() => {});
        }),
      ),
    );
    vi.advanceTimersByTime(100); // before the fix: the sweep spun for ever on the emptied list
    for (const result of results) expect(await result).toBeInstanceOf(CircuitShutdownError);
    expect(b.inFlight).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a thenable whose then() throws rejects the call instead of leaving it in flight', async () => {
    const { b } = breaker({ timeoutMs: false, volumeThreshold: 1 });
    const broken = {
      // biome-ignore lint/suspicious/noThenProperty: the broken thenable under test
      then() {
        throw new Error('broken thenable');
      },
    };
    // before the fix: execute() threw synchronously and the call stayed in flight for ever
    await expect(b.execute(() => broken as unknown as PromiseLike<string>)).rejects.toThrow(
      'broken thenable',
    );
    expect(b.inFlight).toBe(0);
    expect(b.stats().totals.failures).toBe(1);
    expect(b.state).toBe('open');
  });

  it('a per-call timeoutMs overrides the breaker one', async () => {
    const { b } = breaker({ timeoutMs: 10_000 });
    const p = swallow(b.execute(() => new Promise(() => {}), { timeoutMs: 50 }));
    const q = b.execute(slowOk(500), { timeoutMs: false });
    await vi.advanceTimersByTimeAsync(50);
    expect(await p).toMatchObject({ timeoutMs: 50 });
    await vi.advanceTimersByTimeAsync(450);
    await expect(q).resolves.toBe('slow');
    expect(await swallow(b.execute(ok, { timeoutMs: 0 }))).toBeInstanceOf(InvalidOptionError);
  });

  it("links the caller's signal to ctx.signal, counts the outcome as ignored, and removes its listener", async () => {
    const { b } = breaker({ volumeThreshold: 1 });
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    const p = swallow(
      b.execute(
        ({ signal }) => {
          seen = signal;
          return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
        },
        { signal: controller.signal },
      ),
    );
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    const reason = new Error('client went away');
    controller.abort(reason);
    expect(await p).toBe(reason);
    expect(seen?.reason).toBe(reason);
    expect(b.state).toBe('closed');
    expect(b.stats().totals.ignored).toBe(1);

    const longLived = new AbortController();
    for (let i = 0; i < 20; i++)
      await b.execute(({ signal }) => Promise.resolve(signal.aborted), { signal: longLived.signal });
    expect(getEventListeners(longLived.signal, 'abort')).toHaveLength(0);
  });

  it('opens on a hung gateway whose callers give up before timeoutMs, once their calls ran longer than slowCallDurationMs', async () => {
    // A gateway that never answers, and callers whose deadline (2 s) is shorter than the breaker's
    // timeout (10 s): without the slow rule on abandoned calls every call was ignored and it stayed closed.
    const { b, changes } = breaker({ volumeThreshold: 3, timeoutMs: 10_000, slowCallDurationMs: 1_000 });
    const hung = ({ signal }: CallContext) =>
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    // AbortSignal.timeout() runs on Node's internal timers, which fake timers do not reach.
    const deadline = (ms: number) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new DOMException('deadline', 'TimeoutError')), ms);
      return controller.signal;
    };
    for (let i = 0; i < 3; i++) {
      const outcome = swallow(b.execute(hung, { signal: deadline(2_000) }));
      await vi.advanceTimersByTimeAsync(2_000);
      expect(await outcome).toMatchObject({ name: 'TimeoutError' });
    }
    expect(b.stats().totals).toMatchObject({ failures: 3, slow: 3, ignored: 0 });
    expect(b.state).toBe('open');
    expect(changes[0]).toMatchObject({ reason: 'failure-rate', failureRate: 100 });

    // Given up before slowCallDurationMs: still says nothing about the gateway.
    const { b: quick } = breaker({ volumeThreshold: 1, timeoutMs: 10_000, slowCallDurationMs: 1_000 });
    const early = swallow(quick.execute(hung, { signal: deadline(500) }));
    await vi.advanceTimersByTimeAsync(500);
    await early;
    expect(quick.stats().totals).toMatchObject({ failures: 0, slow: 0, ignored: 1 });
    expect(quick.state).toBe('closed');

    // Given up early by a function that takes long to clean up: measured to the abort, still ignored.
    const { b: tidy } = breaker({ volumeThreshold: 1, timeoutMs: 10_000, slowCallDurationMs: 100 });
    const slowToReject = ({ signal }: CallContext) =>
      new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => setTimeout(() => reject(signal.reason), 300)),
      );
    const tidied = swallow(tidy.execute(slowToReject, { signal: deadline(10) }));
    await vi.advanceTimersByTimeAsync(310);
    await tidied;
    expect(tidy.stats().totals).toMatchObject({ failures: 0, ignored: 1 });
    expect(tidy.state).toBe('closed');
    // The same when the function never reads ctx.signal (it has its own way of giving up).
    const own = new AbortController();
    const unread = swallow(
      tidy.execute(
        () => new Promise<never>((_, reject) => setTimeout(() => reject(new Error('late')), 300)),
        {
          signal: own.signal,
        },
      ),
    );
    await vi.advanceTimersByTimeAsync(10);
    own.abort();
    await vi.advanceTimersByTimeAsync(300);
    await unread;
    expect(tidy.stats().totals).toMatchObject({ failures: 0, ignored: 2 });
    expect(getEventListeners(own.signal, 'abort')).toHaveLength(0);
  });

  it('refuses a call whose signal is already aborted, without calling it or counting it', async () => {
    const { b } = breaker();
    const fn = vi.fn(ok);
    const reason = new Error('already gone');
    expect(await swallow(b.execute(fn, { signal: AbortSignal.abort(reason) }))).toBe(reason);
    expect(fn).not.toHaveBeenCalled();
    expect(b.stats().totals.calls).toBe(0);
  });

  it('a signal read after the timeout is already aborted', async () => {
    const { b } = breaker({ timeoutMs: 100 });
    let ctx: CallContext | undefined;
    const p = swallow(
      b.execute((c) => {
        ctx = c;
        return new Promise(() => {});
      }),
    );
    await vi.advanceTimersByTimeAsync(100);
    await p;
    expect(ctx?.signal.aborted).toBe(true);
    expect(ctx?.signal.reason).toBeInstanceOf(CircuitTimeoutError);
  });
});

describe('fire and fallback', () => {
  it('fire(...args) calls the action with the arguments, sync values and sync throws included', async () => {
    const b = circuitBreaker((a: number, b2: number) => a + b2, { volumeThreshold: 1 });
    await expect(b.fire(2, 3)).resolves.toBe(5);
    const thrower = new CircuitBreaker(
      (): number => {
        throw gatewayError({ statusCode: 500 });
      },
      { volumeThreshold: 1 },
    );
    await expect(thrower.fire()).rejects.toMatchObject({ statusCode: 500 });
    expect(thrower.state).toBe('open');
  });

  it('calls the fallback on open, timeout and failure, but not for a business answer', async () => {
    const fallback = vi.fn(
      (error: unknown, id: string) => `fallback ${id} ${(error as { code?: string }).code}`,
    );
    const b = circuitBreaker(
      async (id: string) => {
        if (id === 'declined') throw gatewayError({ statusCode: 402, code: 'DECLINED' });
        if (id === 'hang') return new Promise<string>(() => {});
        throw gatewayError({ statusCode: 500, code: 'E500' });
      },
      { volumeThreshold: 10, fallback, timeoutMs: 100, resetJitter: 0 },
    );
    await expect(b.fire('declined')).rejects.toMatchObject({ statusCode: 402 });
    await expect(b.fire('x')).resolves.toBe('fallback x E500');
    const hang = b.fire('hang');
    await vi.advanceTimersByTimeAsync(100);
    await expect(hang).resolves.toBe('fallback hang ERR_CIRCUIT_TIMEOUT');
    b.trip();
    await expect(b.fire('y')).resolves.toBe('fallback y ERR_CIRCUIT_OPEN');
    expect(b.stats().totals.fallbacks).toBe(3);
  });

  it('execute takes its own fallback; a throwing fallback rejects with its error', async () => {
    const { b } = breaker();
    b.trip();
    await expect(
      b.execute(ok, { fallback: (e) => `cached (${(e as CircuitOpenError).code})` }),
    ).resolves.toBe('cached (ERR_CIRCUIT_OPEN)');
    const boom = new Error('no cache');
    await expect(
      b.execute(ok, {
        fallback: () => {
          throw boom;
        },
      }),
    ).rejects.toBe(boom);
  });

  it('a fallback listener that throws still settles the call with the fallback, and the rules apply', async () => {
    const { b } = breaker({ timeoutMs: 100, volumeThreshold: 1 });
    b.on('fallback', () => {
      throw new Error('listener boom');
    });
    let settled: unknown = 'pending';
    void b
      .execute(() => new Promise<string>(() => {}), { fallback: () => 'cached' })
      .then((value) => {
        settled = value;
      });
    // The listener's error propagates from the timer, as EventEmitter's do...
    expect(() => vi.advanceTimersByTime(100)).toThrow('listener boom');
    await vi.advanceTimersByTimeAsync(0);
    // ...but the caller has its answer (before the fix: pending for ever) and the timeout counted.
    expect(settled).toBe('cached');
    expect(b.stats().totals).toMatchObject({ timeouts: 1, fallbacks: 1, opened: 1 });
    expect(b.inFlight).toBe(0);
  });

  it('a listener that throws out of execute() leaves no unhandled rejection behind', async () => {
    vi.useRealTimers(); // the unhandled-rejection check runs after a real turn of the event loop
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const { b } = breaker({ volumeThreshold: 100 });
      b.on('failure', () => {
        throw new Error('listener boom');
      });
      // The function throws synchronously: the call is settled (rejected) before the listener runs.
      expect(() =>
        b.execute(() => {
          throw gatewayError({ statusCode: 500 });
        }),
      ).toThrow('listener boom');
      // The same with a fallback that throws: the call's promise rejects with its error.
      expect(() =>
        b.execute(
          () => {
            throw gatewayError({ statusCode: 500 });
          },
          {
            fallback: () => {
              throw new Error('no cache');
            },
          },
        ),
      ).toThrow('listener boom');
      await new Promise((resolve) => setImmediate(resolve));
      // before the fix: the caller caught the listener's error, yet its call's rejection went unhandled
      expect(unhandled).not.toHaveBeenCalled();
      expect(b.stats().totals).toMatchObject({ failures: 2, fallbacks: 1 });
      expect(b.inFlight).toBe(0);
      b.close();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('emits fallback after the outcome event, as after reject for a refusal', async () => {
    const { b } = breaker({ volumeThreshold: 100 });
    const events: string[] = [];
    b.on('fallback', (error) => events.push(`fallback ${(error as { statusCode: number }).statusCode}`));
    b.on('failure', () => events.push('failure'));
    b.on('reject', () => events.push('reject'));
    await expect(b.execute(fail500, { fallback: () => 'cached' })).resolves.toBe('cached');
    b.trip();
    await expect(b.execute(ok, { fallback: () => 'cached' })).resolves.toBe('cached');
    expect(events).toEqual(['failure', 'fallback 500', 'reject', 'fallback undefined']);
  });

  it('an execute-only breaker refuses fire()', async () => {
    const b = circuitBreaker();
    // before the fix: a plain TypeError with no code
    await expect((b.fire as () => Promise<never>)()).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option: 'action',
    });
    expect(b.stats().totals.calls).toBe(0);
  });
});

describe('manual control, events and stats', () => {
  it('trip() and reset() move the state and emit every transition', async () => {
    const { b, changes } = breaker();
    const events: string[] = [];
    for (const name of ['open', 'halfOpen', 'close'] as const) b.on(name, () => events.push(name));
    b.trip(250);
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(250);
    expect(b.state).toBe('half-open');
    b.reset();
    expect(b.state).toBe('closed');
    b.trip();
    b.reset();
    expect(events).toEqual(['open', 'halfOpen', 'close', 'open', 'close']);
    expect(() => b.trip(Number.NaN)).toThrow(InvalidOptionError);
    expect(() => b.trip(-1)).toThrow(/`openForMs`/);
    expect(b.state).toBe('closed');
    expect(changes.map((c) => `${c.from}>${c.to}:${c.reason}`)).toEqual([
      'closed>open:manual',
      'open>half-open:reset-timeout',
      'half-open>closed:manual-reset',
      'closed>open:manual',
      'open>closed:manual-reset',
    ]);
  });

  it('emits an event for every outcome', async () => {
    const { b } = breaker({ volumeThreshold: 100, slowCallDurationMs: 10, timeoutMs: 1000 });
    const seen: string[] = [];
    for (const name of [
      'success',
      'failure',
      'timeout',
      'throttled',
      'ignored',
      'slow',
      'reject',
      'fallback',
    ] as const) {
      b.on(name, () => seen.push(name));
    }
    await b.execute(ok);
    await swallow(b.execute(fail500));
    await swallow(b.execute(() => Promise.reject(gatewayError({ statusCode: 429, retryAfterMs: 10 }))));
    await swallow(b.execute(() => Promise.reject(gatewayError({ outcome: 'not_sent' }))));
    const t = swallow(b.execute(() => new Promise(() => {})));
    await vi.advanceTimersByTimeAsync(1000);
    await t;
    b.trip();
    await b.execute(ok, { fallback: () => 'fb' });
    expect(seen).toEqual([
      'success',
      'failure',
      'throttled',
      'ignored',
      'timeout',
      'slow',
      'reject',
      'fallback',
    ]);
  });

  it('stats() reports counts per class, and latency percentiles only when asked', async () => {
    const plain = breaker().b;
    await plain.execute(ok);
    expect(plain.stats().latency).toBeUndefined();

    const { b } = breaker({ latencyPercentiles: true, volumeThreshold: 100 });
    for (const ms of [10, 20, 30, 40, 1000]) {
      const p = b.execute(slowOk(ms));
      await vi.advanceTimersByTimeAsync(ms);
      await p;
    }
    await swallow(b.execute(fail500));
    const stats = b.stats();
    expect(stats).toMatchObject({
      name: 'circuit',
      state: 'closed',
      inFlight: 0,
      retryAfterMs: 0,
      window: { calls: 6, successes: 5, failures: 1 },
      totals: { calls: 6, successes: 5, failures: 1, rejected: 0, opened: 0 },
    });
    expect(stats.window.failureRate).toBeCloseTo(100 / 6);
    expect(stats.latency?.count).toBe(6);
    expect(stats.latency?.p50).toBeGreaterThanOrEqual(20);
    expect(stats.latency?.p50).toBeLessThanOrEqual(22);
    expect(stats.latency?.max).toBeGreaterThanOrEqual(1000);
  });
});

describe('random interleavings (property)', () => {
  type Kind = 'ok' | 'fail' | 'throttle' | 'ignore' | 'hang' | 'throw' | 'value';
  type Op =
    | {
        op: 'call';
        kind: Kind;
        latencyMs: number;
        timeoutMs?: number | false;
        abortAtMs?: number;
        fallback: boolean;
      }
    | { op: 'advance'; ms: number }
    | { op: 'trip' }
    | { op: 'reset' };
  const ops: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record(
        {
          op: fc.constant('call' as const),
          kind: fc.constantFrom<Kind>('ok', 'fail', 'throttle', 'ignore', 'hang', 'throw', 'value'),
          latencyMs: fc.integer({ min: 0, max: 300 }),
          timeoutMs: fc.oneof(fc.constant(false as const), fc.integer({ min: 1, max: 400 })),
          abortAtMs: fc.integer({ min: 0, max: 300 }),
          fallback: fc.boolean(),
        },
        { requiredKeys: ['op', 'kind', 'latencyMs', 'fallback'] },
      ),
    },
    {
      weight: 4,
      arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 1500 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'trip' as const }) },
    { weight: 1, arbitrary: fc.constant({ op: 'reset' as const }) },
  );

  it('every call settles once, probes stay within halfOpenMaxCalls, the totals add up, nothing is left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(ops, { maxLength: 60 }),
          fc.integer({ min: 1, max: 4 }),
          async (steps, maxCalls) => {
            const b = circuitBreaker({
              timeoutMs: 200,
              volumeThreshold: 2,
              resetTimeoutMs: 500,
              halfOpenMaxCalls: maxCalls,
              slowCallDurationMs: 150,
              windowMs: 1000,
            });
            let started = 0;
            let settled = 0;
            // Probes of the current half-open spell whose function has not answered yet.
            let spell = { running: 0 };
            b.on('halfOpen', () => {
              spell = { running: 0 };
            });
            for (const step of steps) {
              if (step.op === 'advance') await vi.advanceTimersByTimeAsync(step.ms);
              else if (step.op === 'trip') b.trip();
              else if (step.op === 'reset') b.reset();
              else {
                const controller = step.abortAtMs === undefined ? undefined : new AbortController();
                if (controller !== undefined) setTimeout(() => controller.abort(), step.abortAtMs);
                started++;
                const answer = (ctx: CallContext): unknown => {
                  if (step.kind === 'throw') throw gatewayError({ statusCode: 500 });
                  if (step.kind === 'value') return 'ok';
                  const mine = spell;
                  if (ctx.probe) {
                    mine.running++;
                    expect(mine.running).toBeLessThanOrEqual(maxCalls);
                  }
                  return new Promise((resolve, reject) => {
                    if (step.kind === 'hang') return;
                    setTimeout(() => {
                      if (ctx.probe) mine.running--;
                      if (step.kind === 'ok') resolve('ok');
                      else if (step.kind === 'fail') reject(gatewayError({ statusCode: 502 }));
                      else if (step.kind === 'throttle')
                        reject(gatewayError({ statusCode: 429, retryAfterMs: 300 }));
                      else reject(gatewayError({ outcome: 'not_sent' }));
                    }, step.latencyMs);
                  });
                };
                void b
                  .execute(answer, {
                    signal: controller?.signal,
                    timeoutMs: step.timeoutMs,
                    fallback: step.fallback ? () => 'fallback' : undefined,
                  })
                  .then(
                    () => settled++,
                    () => settled++,
                  );
              }
              expect(b.inFlight).toBeGreaterThanOrEqual(0);
            }
            await vi.advanceTimersByTimeAsync(1000);
            const hung = b.inFlight;
            b.close();
            await vi.advanceTimersByTimeAsync(0);
            expect(settled).toBe(started);
            expect(b.inFlight).toBe(0);
            const t = b.stats().totals;
            expect(t.calls + t.rejected).toBe(started);
            expect(t.successes + t.failures + t.timeouts + t.throttled + t.ignored + hung).toBe(t.calls);
          },
        ),
        { numRuns: 200 },
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

describe('resources', () => {
  it('close() rejects calls in flight, aborts their signals, refuses new calls and leaves no timer', async () => {
    const { b } = breaker({ timeoutMs: 5000 });
    const signals: AbortSignal[] = [];
    const hang = (ctx: CallContext) => {
      signals.push(ctx.signal);
      return new Promise(() => {});
    };
    const inFlight = [
      swallow(b.execute(hang)),
      swallow(b.execute(hang, { timeoutMs: false })),
      swallow(b.execute(() => new Promise(() => {}), { timeoutMs: 100 })),
    ];
    b.trip();
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    b.close();
    expect(vi.getTimerCount()).toBe(0);
    for (const error of await Promise.all(inFlight)) expect(error).toBeInstanceOf(CircuitShutdownError);
    expect(signals.every((s) => s.aborted && s.reason instanceof CircuitShutdownError)).toBe(true);
    await expect(b.execute(ok)).rejects.toMatchObject({ code: 'ERR_CIRCUIT_SHUTDOWN' });
    expect(b.isShutdown).toBe(true);
    expect(b.inFlight).toBe(0);
    b.close();
  });

  it('idle breakers hold no timer or interval; after a burst each holds one lazily armed timer that stops when it fires', async () => {
    const breakers = Array.from({ length: 500 }, (_, i) => circuitBreaker({ name: `b${i}` }));
    expect(vi.getTimerCount()).toBe(0);
    await Promise.all(breakers.map((b) => b.execute(ok)));
    // One lazily armed timeout timer each (unref'd); nothing repeats.
    expect(vi.getTimerCount()).toBe(500);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(vi.getTimerCount()).toBe(0);
    for (const b of breakers) b.close();
  });
});

describe('real timers', () => {
  beforeEach(() => {
    vi.useRealTimers();
  });

  it("a call that never settles does not keep the process alive (the timeout timer is unref'd)", async () => {
    const b = circuitBreaker({ timeoutMs: 60_000 });
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const p = swallow(b.execute(() => new Promise(() => {})));
    b.trip(60_000);
    const during = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    expect(during).toBe(before);
    b.close();
    expect(await p).toBeInstanceOf(CircuitShutdownError);
  });
});

describe('options', () => {
  it('defaults as documented: 10 s timeout, volume 10, 30 s open, 3 probes of which 2 close it', async () => {
    // No jitter (random() = 0), so open times are exact; every other option at its default.
    const b = circuitBreaker({ random: () => 0 });
    const changes: StateChange[] = [];
    b.on('stateChange', (change) => changes.push(change));
    expect(b.name).toBe('circuit');
    const hung = swallow(b.execute(() => new Promise(() => {})));
    await vi.advanceTimersByTimeAsync(9_999);
    expect(b.inFlight).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await hung).toBeInstanceOf(CircuitTimeoutError); // timeoutMs 10_000
    for (let i = 0; i < 8; i++) await swallow(b.execute(fail500));
    expect(b.state).toBe('closed'); // 9 counted calls, all failed: below volumeThreshold 10
    await swallow(b.execute(fail500));
    expect(changes).toEqual([expect.objectContaining({ to: 'open', openForMs: 30_000, failureRate: 100 })]);
    vi.advanceTimersByTime(30_000);
    expect(b.state).toBe('half-open');
    const probes = [deferred(), deferred(), deferred()];
    const calls = probes.map((probe) => b.execute(() => probe.promise));
    await expect(b.execute(ok)).rejects.toBeInstanceOf(CircuitOpenError); // halfOpenMaxCalls 3
    probes[0]?.resolve('ok');
    await calls[0];
    expect(b.state).toBe('half-open');
    probes[1]?.resolve('ok');
    await calls[1];
    expect(b.state).toBe('closed'); // halfOpenSuccessThreshold min(2, 3)
    probes[2]?.resolve('ok');
    await calls[2];
    b.close();
  });

  it('defaults halfOpenSuccessThreshold to min(2, halfOpenMaxCalls) and maxResetTimeoutMs to max(300 s, resetTimeoutMs)', async () => {
    // halfOpenMaxCalls 1 alone is valid: the threshold follows it down to 1.
    const { b, changes } = breaker({ volumeThreshold: 1, halfOpenMaxCalls: 1, resetBackoffFactor: 1000 });
    await swallow(b.execute(fail500));
    vi.advanceTimersByTime(1000);
    await b.execute(ok);
    expect(b.state).toBe('closed');
    // The backoff (1000 × 1000) is capped at 300_000 by default.
    await swallow(b.execute(fail500));
    vi.advanceTimersByTime(1000);
    await swallow(b.execute(fail500));
    expect(changes.at(-1)).toMatchObject({ to: 'open', openForMs: 300_000 });
    // A resetTimeoutMs above 300 s raises the default cap with it instead of being refused.
    const long = circuitBreaker({ resetTimeoutMs: 600_000, resetJitter: 0, volumeThreshold: 1 });
    await swallow(long.execute(fail500));
    expect(long.retryAfterMs).toBe(600_000);
    long.close();
    b.close();
  });

  const bad: Array<[string, unknown]> = [
    ['timeoutMs', 0],
    ['timeoutMs', 'fast'],
    ['errorThresholdPercentage', 101],
    ['slowCallThresholdPercentage', -1],
    ['slowCallDurationMs', Number.NaN],
    ['volumeThreshold', 1.5],
    ['windowMs', 0],
    ['windowBuckets', 0],
    ['resetTimeoutMs', Number.POSITIVE_INFINITY],
    ['resetTimeoutMs', 3_000_000_000],
    ['maxResetTimeoutMs', 10],
    ['resetBackoffFactor', 0.5],
    ['resetJitter', 2],
    ['halfOpenMaxCalls', 0],
    ['halfOpenSuccessThreshold', 4],
    ['classify', 'default'],
    ['fallback', 42],
    ['latencyPercentiles', 'yes'],
    ['clock', 1],
    ['random', 'dice'],
    ['name', ''],
    ['volumeTreshold', 5],
  ];
  it.each(bad)('rejects %s = %o with an error naming the option', (option, value) => {
    let error: unknown;
    try {
      new CircuitBreaker({ [option]: value } as CircuitBreakerOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option });
    expect((error as Error).message).toContain(`\`${option}\``);
  });

  // Only `undefined` means "not given": null is a bad value, never a silent default.
  const everyOption = [...new Set(bad.map(([option]) => option))].filter((o) => o !== 'volumeTreshold');
  it.each(everyOption)('rejects %s = null with an error naming the option and the value', (option) => {
    let error: unknown;
    try {
      new CircuitBreaker({ [option]: null } as unknown as CircuitBreakerOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option, value: null });
    expect((error as Error).message).toContain('`null`');
  });

  it('names the value and its type in the message', () => {
    expect(() => circuitBreaker({ errorThresholdPercentage: 150 })).toThrow(
      'Expected `errorThresholdPercentage` to be a number between 0 and 100, got `150` (number)',
    );
  });

  it('takes the name from the action', () => {
    async function chargeCard() {}
    expect(circuitBreaker(chargeCard).name).toBe('chargeCard');
    expect(circuitBreaker({ name: 'bank' }).name).toBe('bank');
  });

  it('refuses options in both places (one would be dropped silently), naming the first argument', () => {
    for (const make of [
      () => circuitBreaker({ name: 'a' } as never, { name: 'b' }),
      () => new CircuitBreaker({ name: 'a' } as never, { name: 'b' }),
    ]) {
      expect(make).toThrow(InvalidOptionError);
      expect(make).toThrow(/`action`/);
    }
  });

  it('circuitBreaker(undefined, options) keeps the options, as new CircuitBreaker(undefined, options) does', () => {
    // `circuitBreaker(action?, options?)` in the README: from JavaScript, or with an action that may be absent.
    const made = circuitBreaker(undefined as never, { name: 'bank', volumeThreshold: 3 });
    expect(made.name).toBe('bank');
    expect(new CircuitBreaker(undefined as never, { name: 'bank' }).name).toBe('bank');
    expect(() => circuitBreaker(undefined as never, { volumeTreshold: 3 } as never)).toThrow(
      InvalidOptionError,
    );
  });
});

describe('execute() arguments', () => {
  it("refuses a caller's mistake with InvalidOptionError before admission, counting nothing", async () => {
    const { b } = breaker({ volumeThreshold: 1, timeoutMs: 50 });
    const cases: [() => Promise<unknown>, string, unknown][] = [
      [() => b.execute('nope' as never), 'fn', 'nope'],
      [() => b.execute(ok, null as never), 'options', null],
      [() => b.execute(ok, 'fast' as never), 'options', 'fast'],
      [() => b.execute(ok, { timeoutMS: 1000 } as never), 'timeoutMS', 'timeoutMS'],
      [() => b.execute(ok, { signal: 'abc' } as never), 'signal', 'abc'],
      [() => b.execute(ok, { signal: {} } as never), 'signal', {}],
      [() => b.execute(fail500, { fallback: 42 } as never), 'fallback', 42],
    ];
    for (const [call, option, value] of cases) {
      // before the fix: a TypeError from inside the call, counted as a gateway failure (or a sync throw)
      const error = await swallow(call());
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option, value });
      expect((error as Error).message).toContain(`\`${option}\``);
    }
    expect(b.state).toBe('closed');
    expect(b.stats().totals).toMatchObject({ calls: 0, failures: 0, rejected: 0 });
    // valid options still work, and an explicit undefined is no option
    const controller = new AbortController();
    await expect(
      b.execute(ok, { signal: controller.signal, timeoutMs: undefined, fallback: () => 'fb' }),
    ).resolves.toBe('ok');
  });
});
