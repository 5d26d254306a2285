import { describe, expect, it } from 'vitest';
import { SqliteDriverUnsupportedError } from './errors.js';
import { checkSqliteDriver } from './sqlite-driver.js';

describe('checkSqliteDriver', () => {
  it.each([
    ['20.18.0', '13.2.0'],
    ['20.20.2', '13.0.0'],
    ['21.7.3', '14.1.0'],
  ])('refuses better-sqlite3 >= 13 on Node %s (%s), naming both versions and the fix', (node, driver) => {
    let thrown: unknown;
    try {
      checkSqliteDriver(node, driver);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SqliteDriverUnsupportedError);
    const error = thrown as SqliteDriverUnsupportedError;
    expect(error.code).toBe('ERR_SQLITE_DRIVER_UNSUPPORTED');
    expect(error.nodeVersion).toBe(node);
    expect(error.driverVersion).toBe(driver);
    expect(error.message).toContain(`better-sqlite3 ${driver}`);
    expect(error.message).toContain(`Node.js ${node}`);
    expect(error.message).toContain('"better-sqlite3": "^12.6.2"');
  });

  it.each([
    ['20.18.0', '12.6.2'],
    ['20.20.2', '12.11.1'],
    ['22.0.0', '12.11.1'],
    ['22.23.3', '13.2.0'],
    ['24.21.0', '13.2.0'],
  ])('accepts Node %s with better-sqlite3 %s without a warning', (node, driver) => {
    expect(checkSqliteDriver(node, driver)).toBeUndefined();
  });

  it.each([
    ['24.19.0', '12.11.1'],
    ['25.1.0', '12.6.2'],
  ])('warns for better-sqlite3 <= 12 on Node %s (%s)', (node, driver) => {
    const warning = checkSqliteDriver(node, driver);
    expect(warning).toContain(`better-sqlite3 ${driver}`);
    expect(warning).toContain('nodejs/node#65446');
    expect(warning).toContain('>= 13.2');
  });
});
