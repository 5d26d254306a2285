import { gate } from '@floodgate/token-bucket';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import { type GateLike, LoadShedder, shedderFromOptions } from './load-shedder.js';

describe('LoadShedder', () => {
  it('admits up to each class share of maxConcurrent: cheap traffic is shed first', () => {
    const shedder = new LoadShedder({ maxConcurrent: 10 });
    const admitted = [];
    for (let i = 0; i < 5; i += 1) admitted.push(shedder.admit('low'));
    expect(admitted.every((a) => a.admitted)).toBe(true);
    const low = shedder.admit('low');
    expect(low.admitted).toBe(false);
    if (!low.admitted) {
      expect(low.reason).toBe('overloaded');
      expect(low.answer.status).toBe(503);
      expect(low.answer.headers['retry-after']).toBe('1');
      expect(JSON.parse(low.answer.body as string)).toMatchObject({
        code: 'ERR_LOAD_SHED',
        reason: 'overloaded',
      });
    }
    for (let i = 0; i < 3; i += 1) expect(shedder.admit('normal').admitted).toBe(true);
    expect(shedder.admit('normal').admitted).toBe(false);
    expect(shedder.admit('critical').admitted).toBe(true);
    expect(shedder.admit('critical').admitted).toBe(true);
    expect(shedder.admit('critical').admitted).toBe(false);
    expect(shedder.inFlight).toBe(10);
  });

  it('release frees a slot once, however often it is called', () => {
    const shedder = new LoadShedder({ maxConcurrent: 1, priorities: { only: 1 }, defaultPriority: 'only' });
    const a = shedder.admit();
    expect(a.admitted).toBe(true);
    expect(shedder.admit().admitted).toBe(false);
    if (a.admitted) {
      a.release();
      a.release();
    }
    expect(shedder.inFlight).toBe(0);
    expect(shedder.admit().admitted).toBe(true);
  });

  it('sheds everything while the breaker is open, with its retry time', () => {
    const breaker = { state: 'closed', retryAfterMs: 4500 };
    const shedder = new LoadShedder({ breaker });
    expect(shedder.admit('critical').admitted).toBe(true);
    breaker.state = 'open';
    const refused = shedder.admit('critical');
    expect(refused.admitted === false && refused.reason).toBe('breaker-open');
    expect(refused.admitted === false && refused.answer.headers['retry-after']).toBe('5');
  });

  it('sheds when the gate would (queue full), and when its wait exceeds the class share of maxWaitMs', () => {
    let waitMs = 0;
    let full = false;
    const gate: GateLike = { wouldShed: () => full, estimatedWaitMs: () => waitMs };
    const shedder = new LoadShedder({ gate, maxWaitMs: 1000 });
    waitMs = 600;
    expect(shedder.admit('low').admitted).toBe(false);
    expect(shedder.admit('normal').admitted).toBe(true);
    waitMs = 900;
    const normal = shedder.admit('normal');
    expect(normal.admitted === false && normal.reason).toBe('wait-too-long');
    expect(shedder.admit('critical').admitted).toBe(true);
    full = true;
    const refused = shedder.admit('critical');
    expect(refused.admitted === false && refused.reason).toBe('queue-full');
  });

  it('works with a @floodgate/token-bucket gate: sheds when its queue is full, Retry-After from its estimate', async () => {
    let now = 0;
    const bank = gate({
      rate: { tokens: 1, perMs: 4000 },
      concurrency: 1,
      maxQueue: 1,
      maxWaitMs: 60_000,
      clock: () => now,
    });
    const shedder = new LoadShedder({ gate: bank });
    expect(shedder.admit('critical').admitted).toBe(true);
    let release!: () => void;
    let started!: () => void;
    const inside = new Promise<void>((resolve) => (started = resolve));
    const running = bank.run(
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
          started();
        }),
    );
    await inside;
    const queued = bank.run(async () => {}).catch(() => undefined);
    const refused = shedder.admit('critical');
    expect(refused.admitted === false && refused.reason).toBe('queue-full');
    // One token per 4 s; the queued call takes the next one, this one would wait for the one after.
    expect(refused.admitted === false && refused.answer.headers['retry-after']).toBe('8');
    now = 10_000;
    release();
    await running;
    await queued;
    bank.close();
  });

  it('reads an object verdict of wouldShed', () => {
    const shedder = new LoadShedder({ gate: { wouldShed: () => ({ shed: true, retryAfterMs: 2500 }) } });
    const refused = shedder.admit();
    expect(refused.admitted === false && refused.retryAfterMs).toBe(2500);
  });

  it('runs a custom check and maps unknown classes to the default', () => {
    const shedder = new LoadShedder({
      check: ({ priority }) => (priority === 'low' ? { reason: 'custom' } : undefined),
    });
    expect(shedder.admit('low').admitted).toBe(false);
    expect(shedder.admit('whatever').admitted).toBe(true);
    expect(shedder.hasPriority('whatever')).toBe(false);
  });

  it('validates options', () => {
    expect(() => new LoadShedder({ maxConcurrent: 0 })).toThrow(InvalidOptionError);
    expect(() => new LoadShedder({ priorities: { low: 0 } })).toThrow(/priorities\.low/);
    expect(() => new LoadShedder({ defaultPriority: 'vip' })).toThrow(/defaultPriority/);
    expect(() => new LoadShedder({ gate: {} as never })).toThrow(/`gate`/);
    expect(() => new LoadShedder({ breaker: {} as never })).toThrow(/`breaker`/);
    expect(() => new LoadShedder({ max: 1 } as never)).toThrow(/Unknown option/);
    // The empty table itself is the mistake, not the default class it lacks.
    expect(() => new LoadShedder({ priorities: {} })).toThrow(
      expect.objectContaining({
        option: 'priorities',
        message: expect.stringMatching(/got `\{\}` \(object\)/),
      }),
    );
  });

  it('shedderFromOptions: a shared shedder takes no shedder options; typos fail either way', () => {
    const shared = new LoadShedder({ maxConcurrent: 10 });
    expect(shedderFromOptions(shared, {}, 'test', ['shedder'])).toBe(shared);
    expect(() => shedderFromOptions(shared, { maxConcurrent: 1 }, 'test', ['shedder'])).toThrow(
      expect.objectContaining({ option: 'maxConcurrent', message: expect.stringMatching(/got `1`/) }),
    );
    expect(() => shedderFromOptions(shared, { priorty: 'low' }, 'test', ['shedder'])).toThrow(
      /Unknown option `priorty`/,
    );
    expect(() => shedderFromOptions({}, {}, 'test', ['shedder'])).toThrow(/`shedder`.*got `\{\}`/);
    expect(shedderFromOptions(undefined, { maxConcurrent: 3 }, 'test', []).maxConcurrent).toBe(3);
  });
});
