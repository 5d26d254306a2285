import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the shop serves its live festival dashboard (`public/dashboard.html`). Exported so whoever
 * starts a shop (the festival, the demo) prints the page's real address.
 */
export const DASHBOARD_PATH = '/dashboard';

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** One page as sent: `200` with these fields and bytes. */
export interface ShopPage {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/**
 * The storefront and the festival dashboard, the same for the Express and the Fastify shop: every file of
 * `public/` at `/<name>`, `index.html` also at `/` and `dashboard.html` at {@link DASHBOARD_PATH}. Read
 * once, when the shop is built (a few KB), so serving a page never touches the file system and a page a
 * festival opens mid-surge costs the shop nothing but the write. `no-cache`: a browser asks again on
 * every load, so an edited page shows after a restart of the shop. `nosniff`: a browser takes each file
 * as its `Content-Type` says, never as what its bytes look like (and runs a script only if it is one).
 * Only these exact paths exist: nothing of a request's path ever reaches the file system.
 */
export class ShopPages {
  readonly #byPath = new Map<string, ShopPage>();

  constructor(dir: string = PUBLIC_DIR) {
    for (const name of readdirSync(dir).sort()) {
      const contentType = CONTENT_TYPES[extname(name)];
      if (contentType === undefined) continue;
      const body = readFileSync(join(dir, name));
      this.#byPath.set(`/${name}`, {
        headers: {
          'content-type': contentType,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        },
        body,
      });
    }
    for (const [alias, name] of [
      ['/', '/index.html'],
      [DASHBOARD_PATH, '/dashboard.html'],
    ] as const) {
      const page = this.#byPath.get(name);
      if (page === undefined) throw new Error(`The shop's pages need \`${name.slice(1)}\` in ${dir}`);
      this.#byPath.set(alias, page);
    }
  }

  /** Every path a page is served at. */
  get paths(): readonly string[] {
    return [...this.#byPath.keys()];
  }

  /** The page at `path` (one of {@link paths}). */
  page(path: string): ShopPage | undefined {
    return this.#byPath.get(path);
  }
}
