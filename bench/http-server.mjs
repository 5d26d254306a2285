// The server side of http.bench.ts, in plain JavaScript: each configuration's server runs in its own
// process with this file as its entry (HTTP_BENCH_SERVER holds its spec as JSON). Not TypeScript through
// tsx: a Fastify server loaded with `--import tsx` counted about twice the instructions per request of the
// same server in plain JavaScript (115k against 55k under callgrind, mostly scavenges of surviving
// objects), which would have been charged to every configuration alike and hidden the differences.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// A limit nobody reaches, or one request per hour: everything after the first is refused.
const limits = (scenario) =>
  scenario === 'allow' ? { limit: 1e9, windowMs: 60_000 } : { limit: 1, windowMs: 3_600_000 };

/** floodgate's refusal, taken from floodgate itself once: its status, flat field list and body. */
async function handMadeRefusal(limit, windowMs) {
  const { RateLimit } = await import('@floodgate/http');
  const core = new RateLimit({ limit, windowMs });
  const client = { ip: '127.0.0.1', headers: {} };
  core.check(client);
  const refusal = core.check(client);
  const answer = refusal.answer;
  const list = [...refusal.headers.flat(), 'content-type', answer.headers['content-type']];
  list.push('content-length', String(Buffer.byteLength(answer.body)));
  return { status: answer.status, list, body: answer.body };
}

/**
 * A plain Node server (no framework) answering every request with `respond(res)`, with the server settings
 * Fastify 5 gives its own (lib/server.js): no request timeout, keep-alive 72 s, no socket timeout.
 */
async function plainNodeServer(respond) {
  const server = createServer({ requestTimeout: 0, keepAliveTimeout: 72_000 }, (_req, res) => respond(res));
  server.setTimeout(0);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/**
 * The handler of the route every configuration protects, as `() => body`: `hello` returns a constant
 * object (Fastify's hello-world route), `deals` the shop's `GET /api/deals`, which reads the open group
 * deals from SQLite (better-sqlite3, in memory, the shop's table and its three deals) and renames the
 * columns for JSON: the cheapest route of the shop that does real work.
 */
function routeHandler(route) {
  if (route === 'hello') return () => ({ hello: 'world' });
  const Database = require('better-sqlite3');
  const db = new Database(':memory:');
  db.exec(`CREATE TABLE deals (
    id TEXT PRIMARY KEY, product_id TEXT NOT NULL, title TEXT NOT NULL, price_cents INTEGER NOT NULL,
    currency TEXT NOT NULL, target INTEGER NOT NULL, joined INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'open')`);
  const insert = db.prepare(
    'INSERT INTO deals (id, product_id, title, price_cents, currency, target, joined) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  // The shop's catalogue (examples/group-buy-shop/src/db.ts), a few students in.
  for (const [id, title, priceCents, target, joined] of [
    ['d-headphones', 'Headphones for the whole floor', 5900, 50, 17],
    ['d-textbook', 'Textbook, bulk price', 2900, 30, 8],
    ['d-kettle', 'Kettle for every kitchen', 1200, 20, 11],
  ]) {
    insert.run(id, `p-${id.slice(2)}`, title, priceCents, 'EUR', target, joined);
  }
  const deals = db.prepare('SELECT * FROM deals ORDER BY id');
  // The shop's own renaming (toDeal in examples/group-buy-shop/src/db.ts), repeated: this file stays plain
  // JavaScript (see its header) and the shop's is TypeScript.
  return () =>
    deals.all().map((row) => ({
      id: row.id,
      productId: row.product_id,
      title: row.title,
      priceCents: row.price_cents,
      currency: row.currency,
      target: row.target,
      joined: row.joined,
      status: row.status,
    }));
}

/**
 * Starts the server `spec` ({ framework, variant, scenario, route }) describes; see http.bench.ts for the
 * variants.
 */
async function startServer(spec) {
  const { limit, windowMs } = limits(spec.scenario);
  if (spec.variant === 'nodebare') {
    // The bytes Fastify's bare route sends, written by Node alone.
    return plainNodeServer((res) => {
      const body = JSON.stringify({ hello: 'world' });
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(Buffer.byteLength(body)),
      });
      res.end(body);
    });
  }
  if (spec.variant === 'node429') {
    const { status, list, body } = await handMadeRefusal(limit, windowMs);
    return plainNodeServer((res) => {
      res.writeHead(status, list);
      res.end(body);
    });
  }
  // After the plain Node floors, which serve no route.
  const handler = routeHandler(spec.route);
  if (spec.framework === 'express') {
    const express = require('express');
    const app = express();
    if (spec.variant === 'floodgate') {
      const { rateLimit } = await import('@floodgate/express');
      app.use(rateLimit({ limit, windowMs }));
    } else if (spec.variant === 'incumbent') {
      const { rateLimit } = await import('express-rate-limit');
      app.use(rateLimit({ limit, windowMs, standardHeaders: 'draft-8', legacyHeaders: false }));
    }
    app.get('/', (_req, res) => {
      res.json(handler());
    });
    return await new Promise((resolve) => {
      const server = app.listen(0, '127.0.0.1', () => resolve(server));
    });
  }
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  if (spec.variant === 'floodgate') {
    const { floodgateRateLimit } = await import('@floodgate/fastify');
    await app.register(floodgateRateLimit, { limit, windowMs });
  } else if (spec.variant === 'incumbent') {
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit');
    await app.register(fastifyRateLimit, { max: limit, timeWindow: windowMs });
  } else if (spec.variant === 'hook') {
    app.addHook('onRequest', (_request, _reply, done) => done());
  } else if (spec.variant === 'headers') {
    const { RateLimitHeaders } = await import('@floodgate/http');
    const policy = { name: `${limit}-in-${windowMs / 1000}s`, limit, windowMs };
    const decision = { allowed: true, limit, remaining: limit - 1, retryAfterMs: 0, resetAfterMs: 1 };
    const fields = new RateLimitHeaders([policy]).format([{ policy: 0, key: '', decision }], 0);
    app.addHook('onRequest', (_request, reply, done) => {
      for (const [name, value] of fields) reply.header(name, value);
      done();
    });
  } else if (spec.variant === 'raw429') {
    const { status, list, body } = await handMadeRefusal(limit, windowMs);
    app.addHook('onRequest', (_request, reply) => {
      reply.hijack();
      reply.raw.writeHead(status, list);
      reply.raw.end(body);
    });
  }
  app.get('/', async () => handler());
  await app.listen({ port: 0, host: '127.0.0.1' });
  return app.server;
}

const spec = JSON.parse(process.env.HTTP_BENCH_SERVER);
const server = await startServer(spec);
let requests = 0;
server.on('request', () => {
  requests += 1;
});
process.on('message', (message) => {
  if (message === 'mark') {
    requests = 0;
    process.send?.({ cpu: process.cpuUsage(), requests });
  } else if (message === 'read') {
    process.send?.({ cpu: process.cpuUsage(), requests });
  } else if (message === 'exit') {
    process.exit(0); // a clean exit, so `--cpu-prof` writes its profile
  }
});
process.send?.({ port: server.address().port });
