// The `operationId` contract of a `LimiterStore` (see `ConsumeOptions` and `RefundOptions` in
// src/store.ts) as a table of call sequences with the answers every store must give. The memory store
// (src/memory-store.test.ts) and the Redis store (packages/redis/src/redis-store.test.ts) both run it.
//
// Time: each case runs at one instant on the memory store's injected clock; on Redis, at the server's
// clock, with a refill of one token per 10_000 s, so the milliseconds a case takes refill nothing that
// `remaining` (a floor) could show. Only `allowed`, `remaining` and `replayed` are compared.
import type { BucketSpec, LimiterStore } from '../src/store.js';

/** The bucket every case runs on: a burst of 5, one token per 10_000 s. */
export const CONTRACT_SPEC: BucketSpec = Object.freeze({ capacity: 5, refillPerMs: 1e-7 });

/** What a consume answered, reduced to what the contract fixes. */
export interface ContractAnswer {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly replayed?: true;
}

export type ContractStep =
  | {
      readonly consume: number;
      readonly operationId?: string;
      readonly answer: ContractAnswer;
    }
  | { readonly refund: number; readonly operationId?: string };

export interface ContractCase {
  readonly name: string;
  readonly steps: readonly ContractStep[];
}

export const OPERATION_CONTRACT: readonly ContractCase[] = [
  {
    name: 'a retry with the same operationId is replayed and spends nothing',
    steps: [
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3 } },
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3, replayed: true } },
      { consume: 1, answer: { allowed: true, remaining: 2 } },
    ],
  },
  {
    name: 'a refund naming a granted operation gives its tokens back and forgets it: the retry spends again',
    steps: [
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3 } },
      { refund: 2, operationId: 'pay' },
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3 } },
      { consume: 3, answer: { allowed: true, remaining: 0 } },
      { consume: 1, answer: { allowed: false, remaining: 0 } },
    ],
  },
  {
    // Take A spends and is recorded, take B (same id, in flight at once) is replayed for free, then A is
    // abandoned. Before the fix A's refund gave the tokens back and forgot the record: B went through
    // without any tokens spent, and the retry below spent afresh (remaining 3, not replayed).
    name: 'two takes of one operationId in flight: once replayed, a refund gives nothing back and the record stays',
    steps: [
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3 } },
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3, replayed: true } },
      { refund: 2, operationId: 'pay' },
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 3, replayed: true } },
      { consume: 3, answer: { allowed: true, remaining: 0 } },
      { consume: 1, answer: { allowed: false, remaining: 0 } },
    ],
  },
  {
    // A record the store no longer holds (evicted, expired) cannot say whether it was replayed.
    name: 'a refund naming an operation the store does not hold gives nothing back',
    steps: [
      { consume: 3, answer: { allowed: true, remaining: 2 } },
      { refund: 3, operationId: 'unknown' },
      { consume: 3, answer: { allowed: false, remaining: 2 } },
    ],
  },
  {
    name: 'a second refund of the same operation gives nothing back',
    steps: [
      { consume: 3, answer: { allowed: true, remaining: 2 } },
      { consume: 2, operationId: 'pay', answer: { allowed: true, remaining: 0 } },
      { refund: 2, operationId: 'pay' },
      { refund: 2, operationId: 'pay' },
      { consume: 3, answer: { allowed: false, remaining: 2 } },
    ],
  },
  {
    name: 'a refund without operationId gives its tokens back',
    steps: [
      { consume: 3, answer: { allowed: true, remaining: 2 } },
      { refund: 3 },
      { consume: 5, answer: { allowed: true, remaining: 0 } },
    ],
  },
];

/** The answers a case expects, in the order of its consumes. */
export function expectedAnswers(steps: readonly ContractStep[]): ContractAnswer[] {
  return steps.flatMap((step) => ('consume' in step ? [step.answer] : []));
}

/** Plays a case on `store` under `key` and returns what its consumes answered, for `expectedAnswers`. */
export async function playContract(
  store: LimiterStore,
  key: string,
  steps: readonly ContractStep[],
): Promise<ContractAnswer[]> {
  const answers: ContractAnswer[] = [];
  for (const step of steps) {
    const options = step.operationId === undefined ? undefined : { operationId: step.operationId };
    if ('consume' in step) {
      const { allowed, remaining, replayed } = await store.consume(key, step.consume, CONTRACT_SPEC, options);
      answers.push(replayed === true ? { allowed, remaining, replayed } : { allowed, remaining });
    } else {
      await store.refund(key, step.refund, CONTRACT_SPEC, options);
    }
  }
  return answers;
}
