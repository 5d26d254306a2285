import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidOptionError, loadShedder, loadShedding } from './index.js';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => (server === undefined ? resolve(undefined) : server.close(resolve)));
  server = undefined;
});

describe('loadShedding (express)', () => {
  it('is a named middleware validated at set-up', () => {
    expect(loadShedding().name).toBe('floodgateLoadShedding');
    const shedder = loadShedder();
    expect(() => loadShedding({ shedder, priority: 'vip' })).toThrow(InvalidOptionError);
    expect(() => loadShedding({ shedder, maxConcurrent: 3 })).toThrow(
      /`maxConcurrent` to be absent when `shedder` is given.*got `3`/,
    );
    expect(() => loadShedding({ shedder: {} as never })).toThrow(/`shedder`/);
    expect(() => loadShedding({ shedder, priorty: 'low' } as never)).toThrow(/Unknown option `priorty`/);
    expect(() => loadShedding({ priority: 5 as never })).toThrow(/`priority`.*got `5` \(number\)/);
  });

  it('frees the slot when the client goes away before the answer', async () => {
    const shedder = loadShedder({ maxConcurrent: 1, priorities: { only: 1 }, defaultPriority: 'only' });
    let entered!: () => void;
    const arrived = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const app = express();
    app.get('/slow', loadShedding({ shedder }), (_req, res) => {
      entered();
      res.on('close', () => {}); // never answers: the client gives up
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server?.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow`;
    const controller = new AbortController();
    const pending = fetch(url, { signal: controller.signal }).catch(() => undefined);
    await arrived;
    expect(shedder.inFlight).toBe(1);
    expect((await fetch(url)).status).toBe(503);
    controller.abort();
    await pending;
    for (let i = 0; i < 50 && shedder.inFlight > 0; i += 1)
      await new Promise((resolve) => setImmediate(resolve));
    expect(shedder.inFlight).toBe(0);
  });

  it('classifies requests with a function', async () => {
    const shedder = loadShedder({
      maxConcurrent: 1,
      check: ({ priority }) => (priority === 'low' ? { reason: 'custom' } : undefined),
    });
    const app = express();
    app.get(
      '/',
      loadShedding({ shedder, priority: (req) => (req.query.cheap === '1' ? 'low' : 'critical') }),
      (_req, res) => {
        res.send('ok');
      },
    );
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server?.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    expect((await fetch(`${base}?cheap=1`)).status).toBe(503);
    expect((await fetch(base)).status).toBe(200);
  });
});
