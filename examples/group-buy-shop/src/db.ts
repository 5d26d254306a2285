import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';

/** Where an order is in its life. `paying` is held while a checkout talks to the bank. */
export type OrderStatus = 'created' | 'paying' | 'paid' | 'declined' | 'pending' | 'failed';

export interface Product {
  readonly id: string;
  readonly name: string;
  readonly priceCents: number;
  readonly currency: string;
}

export interface Deal {
  readonly id: string;
  readonly productId: string;
  readonly title: string;
  /** Deal price per student, in minor units. */
  readonly priceCents: number;
  readonly currency: string;
  /** Students needed before the deal completes. */
  readonly target: number;
  readonly joined: number;
  readonly status: 'open' | 'completed';
}

export interface Order {
  readonly id: string;
  readonly dealId: string;
  readonly studentId: string;
  readonly amount: number;
  readonly currency: string;
  readonly status: OrderStatus;
  readonly paymentId: string | null;
  readonly declineReason: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface OrderCounts {
  readonly created: number;
  readonly paying: number;
  readonly paid: number;
  readonly declined: number;
  readonly pending: number;
  readonly failed: number;
  readonly total: number;
}

/** One request the shop sent (or began to send) to the bank: its record and the festival's evidence. */
export interface PaymentAttempt {
  readonly orderId: string;
  /** The shop request (one click of "Pay") that sent it. */
  readonly checkoutId: string;
  /** The shop process that sent it: a new one after every restart. */
  readonly bootId: string;
  readonly idempotencyKey: string;
  readonly status: 'sending' | 'succeeded' | 'declined' | 'throttled' | 'error' | 'unknown';
  readonly httpStatus: number | null;
  readonly startedAt: number;
  /** When its answer (or the lack of one) was known; null while it is still out. */
  readonly finishedAt: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS products (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  price_cents INTEGER NOT NULL CHECK (price_cents > 0),
  currency TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deals (
  id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL REFERENCES products(id),
  title TEXT NOT NULL,
  price_cents INTEGER NOT NULL CHECK (price_cents > 0),
  currency TEXT NOT NULL,
  target INTEGER NOT NULL CHECK (target >= 1),
  joined INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'open'
);
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY,
  deal_id TEXT NOT NULL REFERENCES deals(id),
  student_id TEXT NOT NULL,
  amount INTEGER NOT NULL,
  currency TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'created',
  payment_id TEXT,
  decline_reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (deal_id, student_id)
);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE TABLE IF NOT EXISTS payments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL REFERENCES orders(id),
  checkout_id TEXT NOT NULL,
  boot_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  status TEXT NOT NULL,
  http_status INTEGER,
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS payments_order ON payments(order_id);
`;

const SEED_PRODUCTS: readonly Product[] = [
  { id: 'p-headphones', name: 'Noise-cancelling headphones', priceCents: 8900, currency: 'EUR' },
  { id: 'p-textbook', name: 'Algorithms textbook (4th ed.)', priceCents: 4500, currency: 'EUR' },
  { id: 'p-kettle', name: 'Dorm kettle', priceCents: 1900, currency: 'EUR' },
];

const SEED_DEALS = [
  {
    id: 'd-headphones',
    productId: 'p-headphones',
    title: 'Headphones for the whole floor',
    priceCents: 5900,
    target: 50,
  },
  { id: 'd-textbook', productId: 'p-textbook', title: 'Textbook, bulk price', priceCents: 2900, target: 30 },
  { id: 'd-kettle', productId: 'p-kettle', title: 'Kettle for every kitchen', priceCents: 1200, target: 20 },
] as const;

interface OrderRow {
  id: string;
  deal_id: string;
  student_id: string;
  amount: number;
  currency: string;
  status: OrderStatus;
  payment_id: string | null;
  decline_reason: string | null;
  created_at: number;
  updated_at: number;
}

interface DealRow {
  id: string;
  product_id: string;
  title: string;
  price_cents: number;
  currency: string;
  target: number;
  joined: number;
  status: 'open' | 'completed';
}

const toOrder = (row: OrderRow): Order => ({
  id: row.id,
  dealId: row.deal_id,
  studentId: row.student_id,
  amount: row.amount,
  currency: row.currency,
  status: row.status,
  paymentId: row.payment_id,
  declineReason: row.decline_reason,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
});

const toDeal = (row: DealRow): Deal => ({
  id: row.id,
  productId: row.product_id,
  title: row.title,
  priceCents: row.price_cents,
  currency: row.currency,
  target: row.target,
  joined: row.joined,
  status: row.status,
});

/** Raised when a student joins a deal that does not exist. */
export class UnknownDealError extends Error {
  readonly code = 'ERR_UNKNOWN_DEAL';
}

/**
 * The shop's database: products, group deals, orders and the payments sent for them, in SQLite.
 * The schema is created (and the catalogue seeded) on first open, so a fresh file is a working shop.
 */
export class ShopDb {
  /** Identifies this process's connection in the payments it records (a restart gets a new one). */
  readonly bootId = randomUUID();
  readonly #db: Database.Database;
  readonly #statements;
  readonly #joinDeal: (dealId: string, studentId: string, orderId: string, now: number) => Order;

  constructor(filename = ':memory:') {
    this.#db = new Database(filename);
    // WAL lets the dashboard read while checkouts write; NORMAL is durable across a process crash
    // (the festival's SIGKILL), which is the failure this example cares about.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(SCHEMA);
    this.#seed();
    const db = this.#db;
    this.#statements = {
      products: db.prepare<[], Product>(
        'SELECT id, name, price_cents AS priceCents, currency FROM products ORDER BY id',
      ),
      deals: db.prepare<[], DealRow>('SELECT * FROM deals ORDER BY id'),
      deal: db.prepare<[string], DealRow>('SELECT * FROM deals WHERE id = ?'),
      order: db.prepare<[string], OrderRow>('SELECT * FROM orders WHERE id = ?'),
      orderOf: db.prepare<[string, string], OrderRow>(
        'SELECT * FROM orders WHERE deal_id = ? AND student_id = ?',
      ),
      insertOrder: db.prepare(
        `INSERT INTO orders (id, deal_id, student_id, amount, currency, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'created', ?, ?)`,
      ),
      bumpDeal: db.prepare(
        `UPDATE deals SET joined = joined + 1,
           status = CASE WHEN joined + 1 >= target THEN 'completed' ELSE status END WHERE id = ?`,
      ),
      claim: db.prepare(
        `UPDATE orders SET status = 'paying', updated_at = ?
         WHERE id = ? AND status IN ('created', 'failed', 'declined')`,
      ),
      setStatus: db.prepare(
        `UPDATE orders SET status = ?, payment_id = COALESCE(?, payment_id), decline_reason = ?, updated_at = ?
         WHERE id = ? AND status != 'paid'`,
      ),
      counts: db.prepare<[], { status: OrderStatus; n: number }>(
        'SELECT status, COUNT(*) AS n FROM orders GROUP BY status',
      ),
      ordersWithStatus: db.prepare<[string], OrderRow>('SELECT * FROM orders WHERE status = ?'),
      allOrders: db.prepare<[], OrderRow>('SELECT * FROM orders'),
      insertAttempt: db.prepare(
        `INSERT INTO payments (order_id, checkout_id, boot_id, idempotency_key, status, started_at)
         VALUES (?, ?, ?, ?, 'sending', ?)`,
      ),
      insertFinishedAttempt: db.prepare(
        `INSERT INTO payments (order_id, checkout_id, boot_id, idempotency_key, status, http_status, started_at, finished_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      finishAttempt: db.prepare(
        'UPDATE payments SET status = ?, http_status = ?, finished_at = ? WHERE id = ?',
      ),
      attempts: db.prepare<[], PaymentAttempt>(
        `SELECT order_id AS orderId, checkout_id AS checkoutId, boot_id AS bootId,
           idempotency_key AS idempotencyKey, status, http_status AS httpStatus, started_at AS startedAt,
           finished_at AS finishedAt
         FROM payments ORDER BY id`,
      ),
    };
    this.#joinDeal = db.transaction((dealId: string, studentId: string, orderId: string, now: number) => {
      const existing = this.#statements.orderOf.get(dealId, studentId);
      if (existing) return toOrder(existing);
      const deal = this.#statements.deal.get(dealId);
      if (!deal) throw new UnknownDealError(`There is no deal \`${dealId}\``);
      this.#statements.insertOrder.run(orderId, dealId, studentId, deal.price_cents, deal.currency, now, now);
      this.#statements.bumpDeal.run(dealId);
      return toOrder(this.#statements.order.get(orderId) as OrderRow);
    });
  }

  /** The underlying connection, for ledgers that keep their tables in the same file. */
  get connection(): Database.Database {
    return this.#db;
  }

  #seed(): void {
    const insertProduct = this.#db.prepare(
      'INSERT OR IGNORE INTO products (id, name, price_cents, currency) VALUES (?, ?, ?, ?)',
    );
    const insertDeal = this.#db.prepare(
      `INSERT OR IGNORE INTO deals (id, product_id, title, price_cents, currency, target)
       VALUES (?, ?, ?, ?, 'EUR', ?)`,
    );
    this.#db.transaction(() => {
      for (const p of SEED_PRODUCTS) insertProduct.run(p.id, p.name, p.priceCents, p.currency);
      for (const d of SEED_DEALS) insertDeal.run(d.id, d.productId, d.title, d.priceCents, d.target);
    })();
  }

  products(): Product[] {
    return this.#statements.products.all();
  }

  deals(): Deal[] {
    return this.#statements.deals.all().map(toDeal);
  }

  deal(id: string): Deal | undefined {
    const row = this.#statements.deal.get(id);
    return row ? toDeal(row) : undefined;
  }

  /**
   * Joins a student to a deal and opens their order; joining twice returns the same order.
   * @throws {UnknownDealError} when the deal does not exist.
   */
  joinDeal(dealId: string, studentId: string, orderId: string, now = Date.now()): Order {
    return this.#joinDeal(dealId, studentId, orderId, now);
  }

  /** Joins many students at once, in one transaction (the festival opens its orders this way). */
  joinDeals(
    joins: readonly { dealId: string; studentId: string; orderId: string }[],
    now = Date.now(),
  ): Order[] {
    return this.#db.transaction(() =>
      joins.map((j) => this.#joinDeal(j.dealId, j.studentId, j.orderId, now)),
    )();
  }

  order(id: string): Order | undefined {
    const row = this.#statements.order.get(id);
    return row ? toOrder(row) : undefined;
  }

  /**
   * Marks an order `paying` unless a checkout already holds it or it is settled.
   * @returns whether this caller now holds the order.
   */
  claimForPayment(orderId: string, now = Date.now()): boolean {
    return this.#statements.claim.run(now, orderId).changes === 1;
  }

  /** Records where a payment ended. A paid order stays paid whatever comes later. */
  setOrderStatus(
    orderId: string,
    status: OrderStatus,
    details: { paymentId?: string | undefined; declineReason?: string | undefined } = {},
    now = Date.now(),
  ): void {
    this.#statements.setStatus.run(
      status,
      details.paymentId ?? null,
      details.declineReason ?? null,
      now,
      orderId,
    );
  }

  orderCounts(): OrderCounts {
    const counts = { created: 0, paying: 0, paid: 0, declined: 0, pending: 0, failed: 0, total: 0 };
    for (const { status, n } of this.#statements.counts.all()) {
      counts[status] = n;
      counts.total += n;
    }
    return counts;
  }

  orders(status?: OrderStatus): Order[] {
    const rows = status ? this.#statements.ordersWithStatus.all(status) : this.#statements.allOrders.all();
    return rows.map(toOrder);
  }

  /** Notes a request about to leave for the bank; returns a handle to record how it ended. */
  recordAttempt(orderId: string, checkoutId: string, idempotencyKey: string, now = Date.now()): number {
    return Number(
      this.#statements.insertAttempt.run(orderId, checkoutId, this.bootId, idempotencyKey, now)
        .lastInsertRowid,
    );
  }

  /** Records a request to the bank that has already ended (one write instead of two). */
  recordFinishedAttempt(
    attempt: Omit<PaymentAttempt, 'bootId' | 'finishedAt'> & { readonly finishedAt: number },
  ): void {
    this.#statements.insertFinishedAttempt.run(
      attempt.orderId,
      attempt.checkoutId,
      this.bootId,
      attempt.idempotencyKey,
      attempt.status,
      attempt.httpStatus,
      attempt.startedAt,
      attempt.finishedAt,
    );
  }

  finishAttempt(
    id: number,
    status: PaymentAttempt['status'],
    httpStatus: number | null,
    now = Date.now(),
  ): void {
    this.#statements.finishAttempt.run(status, httpStatus, now, id);
  }

  attempts(): PaymentAttempt[] {
    return this.#statements.attempts.all();
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
