import { describe, expect, it } from 'vitest';
import { checkFrameworkServes, flagsOf, parseFramework, readShopConfig } from './config.js';

const failure = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected it to throw');
};

describe('readShopConfig', () => {
  it('gives a stopping shop 5 s of grace unless told otherwise, and refuses a grace that is no whole ms count', () => {
    expect(readShopConfig([], {}).shutdownGraceMs).toBe(5000);
    expect(readShopConfig(['--shutdown-grace-ms', '0'], {}).shutdownGraceMs).toBe(0);
    expect(readShopConfig([], { SHOP_SHUTDOWN_GRACE_MS: '250' }).shutdownGraceMs).toBe(250);
    const error = failure(() => readShopConfig(['--shutdown-grace-ms=-1'], {}));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe('Expected `--shutdown-grace-ms` to be an integer >= 0, got `-1`');
    expect(() => readShopConfig([], { SHOP_SHUTDOWN_GRACE_MS: '' })).toThrow(/got ``/);
    expect(() => readShopConfig(['--shutdown-grace-ms', '1.5'], {})).toThrow(/got `1.5`/);
  });

  it('serves the floodgate shop on Express unless told otherwise', () => {
    const config = readShopConfig([], {});
    expect(config).toMatchObject({ shop: 'floodgate', framework: 'express', port: 3000 });
  });

  it('takes `--framework fastify`, and `SHOP_FRAMEWORK` when the flag is not given', () => {
    expect(readShopConfig(['--framework', 'fastify'], {}).framework).toBe('fastify');
    expect(readShopConfig(['--framework=fastify'], {}).framework).toBe('fastify');
    expect(readShopConfig([], { SHOP_FRAMEWORK: 'fastify' }).framework).toBe('fastify');
    expect(readShopConfig(['--framework', 'express'], { SHOP_FRAMEWORK: 'fastify' }).framework).toBe(
      'express',
    );
  });

  it('reads the flags after the `--` that `pnpm start -- --framework fastify` passes on', () => {
    const config = readShopConfig(['--', '--framework', 'fastify', '--port', '0'], {});
    expect(config).toMatchObject({ framework: 'fastify', port: 0 });
  });

  it('refuses a framework it does not know, naming the option and the value', () => {
    const error = failure(() => readShopConfig(['--framework', 'koa'], {}));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe('Expected `--framework` to be one of express, fastify, got `koa`');
    // Names are exact: no guessing at a capital letter.
    expect(() => readShopConfig(['--framework', 'Fastify'], {})).toThrow(/got `Fastify`/);
    expect(() => readShopConfig([], { SHOP_FRAMEWORK: '' })).toThrow(/`--framework`.*got ``/);
    expect(() => readShopConfig(['--framework'], {})).toThrow(TypeError);
  });

  it('refuses Fastify for a shop other than floodgate, naming both options', () => {
    for (const shop of ['naive', 'careful']) {
      const error = failure(() => readShopConfig(['--shop', shop, '--framework', 'fastify'], {}));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe(
        `Expected \`--shop\` to be \`floodgate\` with \`--framework fastify\` (the Fastify app is the floodgate shop only), got \`${shop}\``,
      );
    }
    expect(readShopConfig(['--shop', 'naive', '--framework', 'express'], {}).shop).toBe('naive');
  });
});

describe('parseFramework, checkFrameworkServes, flagsOf', () => {
  it('names the option it parses for', () => {
    expect(parseFramework('fastify')).toBe('fastify');
    expect(() => parseFramework('hono', 'app')).toThrow(
      'Expected `--app` to be one of express, fastify, got `hono`',
    );
  });

  it('lets Express serve every shop and Fastify the floodgate shop', () => {
    for (const shop of ['naive', 'careful', 'floodgate'] as const) {
      expect(() => checkFrameworkServes('express', shop)).not.toThrow();
    }
    expect(() => checkFrameworkServes('fastify', 'floodgate')).not.toThrow();
    expect(() => checkFrameworkServes('fastify', 'naive')).toThrow(TypeError);
  });

  it('drops only a leading `--`', () => {
    expect(flagsOf(['--', '--shop', 'naive'])).toEqual(['--shop', 'naive']);
    expect(flagsOf(['--shop', 'naive', '--'])).toEqual(['--shop', 'naive', '--']);
    expect(flagsOf([])).toEqual([]);
  });
});
