/**
 * A one-line progress bar on stderr. On a terminal it redraws in place; elsewhere (CI logs, pipes) it
 * prints a line per phase so the log stays readable.
 */
export class ProgressBar {
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  #lastPhase = '';
  #lastDraw = 0;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream;
    this.#tty = stream.isTTY === true;
  }

  update(label: string, phase: string, done: number, total: number): void {
    const key = `${label}:${phase}`;
    if (!this.#tty) {
      if (key !== this.#lastPhase) this.#stream.write(`festival: ${label}: ${phase}\n`);
      this.#lastPhase = key;
      return;
    }
    const now = performance.now();
    if (key === this.#lastPhase && now - this.#lastDraw < 80 && done < total) return;
    this.#lastPhase = key;
    this.#lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.#stream.columns ?? 80) - 60));
    const filled = total > 0 ? Math.round((done / total) * width) : 0;
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const text = `${label.padEnd(20)} ${bar} ${String(done).padStart(6)}/${total} students  ${phase}`;
    this.#stream.write(`\r\x1b[2K${text}`);
  }

  /**
   * Prints a line of its own (an address to open, say) above the bar, which is drawn again at the next
   * update.
   */
  note(text: string): void {
    if (!this.#tty) {
      this.#stream.write(`festival: ${text}\n`);
      return;
    }
    this.#stream.write(`\r\x1b[2K${text}\n`);
    // Force the next update to redraw, even within the same phase and 80 ms.
    this.#lastDraw = Number.NEGATIVE_INFINITY;
  }

  /** Ends the current line (keeps what it showed). */
  done(): void {
    if (this.#tty) this.#stream.write('\n');
    this.#lastPhase = '';
  }
}
