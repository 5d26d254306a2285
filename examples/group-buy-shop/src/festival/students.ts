import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { seededRandom } from './random.js';

/** What one student saw in the end. */
export type StudentOutcome =
  /** Told "paid". */
  | 'paid'
  /** Told "declined" (their card has no funds). */
  | 'declined'
  /** Told "pending", and the order settled while they watched the page. */
  | 'pending-then-paid'
  | 'pending-then-declined'
  /** Told "pending" and it had not settled when the festival ended. */
  | 'pending'
  /** Gave up after being told "failed" or "busy" on every click. */
  | 'gave-up-failed'
  /** Gave up without any answer. */
  | 'gave-up-no-answer'
  /** Could not even open an order. */
  | 'no-order';

export interface StudentRecord {
  readonly student: string;
  readonly orderId: string | undefined;
  readonly wantsDecline: boolean;
  /** ms since the surge began. */
  readonly arrivedAt: number;
  readonly firstClickAt: number | undefined;
  /** When the student got the answer they left with (ms since the surge began). */
  readonly answeredAt: number | undefined;
  readonly clicks: number;
  readonly outcome: StudentOutcome;
}

/** One POST /api/checkout: when, how long, what came back. */
export interface CheckoutRequestRecord {
  readonly at: number;
  readonly latencyMs: number;
  /**
   * HTTP status; 0 when the connection failed (refused, reset); -1 when no answer had come by the end of
   * the surge (then `latencyMs` is how long it had waited so far).
   */
  readonly status: number;
  readonly replayed: boolean;
}

export interface SurgeOptions {
  /** Shop base URLs; students are spread over them round-robin, like a load balancer would. */
  readonly shopUrls: readonly string[];
  readonly students: number;
  /** Students arrive uniformly within this many ms. */
  readonly arrivalMs: number;
  readonly seed: number;
  /** Whether the shop's page sends one `Idempotency-Key` per order with every click. */
  readonly sendsIdempotencyKey: boolean;
  /** Share of students whose card is declined. @default 0.03 */
  readonly declineShare?: number;
  /** Most clicks of "Pay" per student. @default 8 */
  readonly maxClicks?: number;
  /** A student waits this long (ms, uniform) for an answer before clicking again. @default [1500, 4000] */
  readonly patienceMs?: readonly [number, number];
  /** Students still waiting this long after their arrival walk away. @default 12_000 */
  readonly giveUpAfterMs?: number;
  /**
   * Orders opened before the surge, by student index (the deal was joined during the day; at the
   * festival's start it completes and everyone pays at once). Students without one join first.
   */
  readonly orders?: readonly string[];
  /** Stops the surge early (students in flight walk away). */
  readonly signal?: AbortSignal;
  /** Called with each student that has finished. */
  readonly onStudentDone?: (record: StudentRecord) => void;
}

export interface SurgeResult {
  readonly startedAt: number;
  readonly students: StudentRecord[];
  readonly requests: CheckoutRequestRecord[];
  readonly durationMs: number;
}

export const DEALS = ['d-headphones', 'd-textbook', 'd-kettle'] as const;

/** The deal student `index` joins. */
export function dealOf(index: number): string {
  return DEALS[index % DEALS.length] as string;
}

/** The id student `index` goes by. */
export function studentName(index: number): string {
  return `student-${index}`;
}

interface Answer {
  status: number;
  body: { status?: string; id?: string; order?: { id: string } } | undefined;
  retryAfterMs: number | undefined;
  replayed: boolean;
}

/**
 * The festival surge: N students arrive within a few seconds, each joins a deal and clicks "Pay";
 * impatient ones click again when the answer is slow, and everyone reacts to what the page says
 * ("busy, try again in 2 s", "failed, try again", "pending"), up to `maxClicks` clicks.
 */
export async function runSurge(options: SurgeOptions): Promise<SurgeResult> {
  const random = seededRandom(options.seed);
  const declineShare = options.declineShare ?? 0.03;
  const maxClicks = options.maxClicks ?? 8;
  const [patienceMin, patienceMax] = options.patienceMs ?? [1500, 4000];
  const giveUpAfterMs = options.giveUpAfterMs ?? 12_000;
  // Every student's browser has its own connections to the shop (up to one per click in flight): a pool
  // per student. One shared pool would cap the shop's concurrency at its size, and undici looks for a free
  // connection by scanning them all, which costs the generator dearly with thousands.
  const pools = new Set<Pool>();
  const browserOf = (index: number) => {
    const pool = new Pool(options.shopUrls[index % options.shopUrls.length] as string, {
      connections: maxClicks,
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
    });
    pools.add(pool);
    return pool;
  };
  const requests: CheckoutRequestRecord[] = [];
  // Clicks still waiting for their answer.
  const outstanding = new Set<{ readonly at: number }>();
  const startedAt = performance.now();
  const since = () => performance.now() - startedAt;
  // The end of the surge, as a flag and one list of callbacks: thousands of listeners on one AbortSignal
  // would make every request's add/remove a linear scan.
  let stopped = false;
  const onStop = new Set<() => void>();
  const stopAll = () => {
    if (stopped) return;
    stopped = true;
    for (const callback of onStop) callback();
  };
  options.signal?.addEventListener('abort', stopAll, { once: true });

  async function send(
    pool: Pool,
    method: 'GET' | 'POST',
    path: string,
    student: string,
    body?: object,
    key?: string,
  ): Promise<Answer> {
    const headers: Record<string, string> = { 'x-student-id': student, 'content-type': 'application/json' };
    if (key) headers['idempotency-key'] = `"${key}"`;
    const response = await pool.request({
      method,
      path,
      headers,
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.body.text();
    let parsed: Answer['body'];
    try {
      parsed = text ? (JSON.parse(text) as Answer['body']) : undefined;
    } catch {
      parsed = undefined;
    }
    const retryAfter = Number(response.headers['retry-after']);
    return {
      status: response.statusCode,
      body: parsed,
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
      replayed: response.headers['idempotent-replayed'] === 'true',
    };
  }

  async function student(index: number): Promise<StudentRecord> {
    const id = studentName(index);
    const arrivalDelay = random() * options.arrivalMs;
    const wantsDecline = random() < declineShare;
    const patience = () => patienceMin + random() * (patienceMax - patienceMin);
    const deal = dealOf(index);
    const patienceDraws = Array.from({ length: maxClicks }, patience);
    const reactionDraws = Array.from({ length: maxClicks }, () => 300 + random() * 900);
    const key = options.sendsIdempotencyKey ? randomUUID() : undefined;

    await sleep(arrivalDelay);
    const pool = browserOf(index);
    const arrivedAt = since();
    const deadline = arrivedAt + giveUpAfterMs;
    const record = (fields: Partial<StudentRecord> & Pick<StudentRecord, 'outcome'>): StudentRecord => ({
      student: id,
      orderId: undefined,
      wantsDecline,
      arrivedAt,
      firstClickAt: undefined,
      answeredAt: undefined,
      clicks: 0,
      ...fields,
    });

    // Join the deal (opens the order). A crashed shop refuses connections for a moment: retry.
    let orderId: string | undefined = options.orders?.[index];
    while (!orderId && since() < deadline && !stopped) {
      try {
        const answer = await send(pool, 'POST', `/api/deals/${deal}/join`, id, {});
        if (answer.status === 201) orderId = answer.body?.order?.id;
        else await sleep(500);
      } catch {
        await sleep(500);
      }
    }
    if (!orderId) return record({ outcome: 'no-order' });

    const source = wantsDecline ? 'tok_decline_insufficient_funds' : 'tok_ok';
    let clicks = 0;
    let firstClickAt: number | undefined;
    let inFlight = 0;
    let lastNonAnswer: 'failed' | 'none' = 'none';
    let toldPendingAt: number | undefined;

    return await new Promise<StudentRecord>((resolve) => {
      let done = false;
      let nextClick: NodeJS.Timeout | undefined;
      const finish = (outcome: StudentOutcome, answeredAt = since()) => {
        if (done) return;
        done = true;
        clearTimeout(nextClick);
        clearTimeout(walkAway);
        onStop.delete(leave);
        resolve(record({ orderId, firstClickAt, answeredAt, clicks, outcome }));
      };
      const leave = () => {
        if (toldPendingAt !== undefined) finish('pending', toldPendingAt);
        else finish(lastNonAnswer === 'failed' ? 'gave-up-failed' : 'gave-up-no-answer', undefined);
      };
      const walkAway = setTimeout(leave, Math.max(0, deadline - since()));
      onStop.add(leave);

      const scheduleClick = (delay: number) => {
        clearTimeout(nextClick);
        if (clicks >= maxClicks) {
          if (inFlight === 0) finish(lastNonAnswer === 'failed' ? 'gave-up-failed' : 'gave-up-no-answer');
          return;
        }
        nextClick = setTimeout(click, delay);
      };

      const watchPending = async () => {
        const toldAt = since();
        toldPendingAt = toldAt;
        while (!done) {
          await sleep(1000);
          if (done) return;
          try {
            const answer = await send(pool, 'GET', `/api/orders/${orderId}`, id);
            if (answer.body?.status === 'paid') return finish('pending-then-paid', toldAt);
            if (answer.body?.status === 'declined') return finish('pending-then-declined', toldAt);
          } catch {
            // The shop may be restarting; keep watching.
          }
        }
      };

      const click = () => {
        if (done) return;
        clicks++;
        firstClickAt ??= since();
        inFlight++;
        const at = since();
        const open = { at };
        outstanding.add(open);
        // An impatient student clicks again if this answer is slow.
        scheduleClick(patienceDraws[clicks - 1] ?? patienceMax);
        send(pool, 'POST', '/api/checkout', id, { orderId, source }, key).then(
          (answer) => {
            inFlight--;
            outstanding.delete(open);
            requests.push({ at, latencyMs: since() - at, status: answer.status, replayed: answer.replayed });
            if (done) return;
            const status = answer.body?.status;
            if (answer.status === 201 || (answer.status === 200 && status === 'paid')) return finish('paid');
            if (answer.status === 402) return finish('declined');
            if (answer.status === 202) {
              clearTimeout(nextClick);
              if (toldPendingAt === undefined) void watchPending();
              return;
            }
            // Busy, in progress, rate limited, failed: the page says "try again"; the student does,
            // after the Retry-After it shows, or after reading the message.
            lastNonAnswer = 'failed';
            scheduleClick(answer.retryAfterMs ?? reactionDraws[clicks - 1] ?? 1000);
          },
          () => {
            inFlight--;
            outstanding.delete(open);
            // Requests we cut off ourselves at the end of the surge are not the shop's doing.
            if (stopped) return;
            requests.push({ at, latencyMs: since() - at, status: 0, replayed: false });
            if (done) return;
            lastNonAnswer = 'failed';
            scheduleClick(reactionDraws[clicks - 1] ?? 1000);
          },
        );
      };
      click();
    });
  }

  const records: StudentRecord[] = [];
  await Promise.all(
    Array.from({ length: options.students }, (_, i) =>
      student(i).then((r) => {
        records.push(r);
        options.onStudentDone?.(r);
      }),
    ),
  );
  options.signal?.removeEventListener('abort', stopAll);
  stopAll();
  const endedAt = since();
  for (const open of outstanding) {
    requests.push({ at: open.at, latencyMs: endedAt - open.at, status: -1, replayed: false });
  }
  await Promise.all([...pools].map((pool) => pool.destroy()));
  return { startedAt: Date.now() - since(), students: records, requests, durationMs: since() };
}
