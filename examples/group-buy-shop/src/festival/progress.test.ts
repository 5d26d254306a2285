import { describe, expect, it } from 'vitest';
import { ProgressBar } from './progress.js';

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  const stream = { isTTY, columns: 100, write: (text: string) => writes.push(text) };
  return { stream: stream as unknown as NodeJS.WriteStream, writes };
}

describe('ProgressBar.note', () => {
  it('on a terminal, clears the bar, prints the line and redraws the bar at the next update', () => {
    const { stream, writes } = fakeStream(true);
    const bar = new ProgressBar(stream);
    bar.update('floodgate', 'surge', 1, 10);
    bar.note('live dashboard: http://127.0.0.1:4321/dashboard  (floodgate)');
    bar.update('floodgate', 'surge', 2, 10);
    expect(writes).toHaveLength(3);
    expect(writes[1]).toBe('\r\x1b[2Klive dashboard: http://127.0.0.1:4321/dashboard  (floodgate)\n');
    expect(writes[2]?.startsWith('\r\x1b[2Kfloodgate ')).toBe(true);
    expect(writes[2]?.endsWith('     2/10 students  surge')).toBe(true);
  });

  it('elsewhere, prints one plain line among the phase lines', () => {
    const { stream, writes } = fakeStream(false);
    const bar = new ProgressBar(stream);
    bar.update('naive', 'starting the shop', 0, 10);
    bar.note('live dashboard: http://127.0.0.1:4321/dashboard  (naive)');
    bar.update('naive', 'starting the shop', 0, 10);
    bar.update('naive', 'surge', 0, 10);
    expect(writes).toEqual([
      'festival: naive: starting the shop\n',
      'festival: live dashboard: http://127.0.0.1:4321/dashboard  (naive)\n',
      'festival: naive: surge\n',
    ]);
  });
});
