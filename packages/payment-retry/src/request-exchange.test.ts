import { getEventListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import { RequestExchange } from './request-exchange.js';

const OPTIONS: Dispatcher.RequestOptions = { origin: 'http://bank.test', path: '/payments', method: 'POST' };

/** A dispatcher whose one request() the test answers (or fails) by hand, with the body it chooses. */
function handDispatcher(): {
  dispatcher: Dispatcher;
  calls: () => number;
  answer: (body: Readable, statusCode?: number) => void;
} {
  let calls = 0;
  let resolve: (response: Dispatcher.ResponseData) => void = () => {};
  const dispatcher = {
    request: () => {
      calls++;
      return new Promise<Dispatcher.ResponseData>((r) => {
        resolve = r;
      });
    },
  } as unknown as Dispatcher;
  return {
    dispatcher,
    calls: () => calls,
    answer: (body, statusCode = 201) =>
      resolve({ statusCode, headers: {}, body } as unknown as Dispatcher.ResponseData),
  };
}

describe('RequestExchange', () => {
  it('answers the status, the headers and a body in several chunks as one string, without a BOM', async () => {
    const hand = handDispatcher();
    const controller = new AbortController();
    const answer = new RequestExchange().send(hand.dispatcher, OPTIONS, controller.signal, 1024);
    hand.answer(Readable.from([Buffer.from([0xef, 0xbb]), Buffer.from([0xbf, 0x7b]), '"id":"pay_1"}']));

    expect(await answer).toEqual({ statusCode: 201, headers: {}, body: '{"id":"pay_1"}' });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects with the reason at once while the dispatcher has not answered, and destroys a late body', async () => {
    const hand = handDispatcher();
    const controller = new AbortController();
    const exchange = new RequestExchange();
    const answer = exchange.send(hand.dispatcher, OPTIONS, controller.signal, 1024);
    const reason = new Error('deadline');

    controller.abort(reason);

    await expect(answer).rejects.toBe(reason);
    expect(exchange.responded).toBe(false);
    // The answer comes after all: unread, it would hold its connection, so it is destroyed.
    const late = Readable.from(['{"id":"pay_1"}']);
    hand.answer(late);
    await new Promise((resolve) => setImmediate(resolve));
    expect(late.destroyed).toBe(true);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('destroys a body larger than maxBytes unread and rejects as an own Pool would', async () => {
    const hand = handDispatcher();
    const exchange = new RequestExchange();
    const answer = exchange.send(hand.dispatcher, OPTIONS, new AbortController().signal, 8);
    let pulled = 0;
    const body = new Readable({
      read() {
        pulled++;
        this.push('0123456789');
      },
    });
    hand.answer(body);

    await expect(answer).rejects.toMatchObject({ code: 'UND_ERR_RES_EXCEEDED_MAX_SIZE' });
    expect(exchange.responded).toBe(true);
    expect(body.destroyed).toBe(true);
    expect(pulled).toBeLessThan(5);
  });

  it('rejects with the reason when the signal aborts while the body streams', async () => {
    const hand = handDispatcher();
    const controller = new AbortController();
    const exchange = new RequestExchange();
    const answer = exchange.send(hand.dispatcher, OPTIONS, controller.signal, 1024);
    const body = new Readable({ read() {} }); // the status line came, the body never does
    hand.answer(body);
    await new Promise((resolve) => setImmediate(resolve));

    controller.abort(new Error('caller gave up'));

    await expect(answer).rejects.toThrow('caller gave up');
    expect(exchange.responded).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(body.destroyed).toBe(true);
  });

  it('never calls the dispatcher when the signal has already aborted', async () => {
    const hand = handDispatcher();
    const reason = new Error('closed');

    await expect(
      new RequestExchange().send(hand.dispatcher, OPTIONS, AbortSignal.abort(reason), 1024),
    ).rejects.toBe(reason);
    expect(hand.calls()).toBe(0);
  });
});
