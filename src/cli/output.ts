import type { Progress } from '../util/progress.js';

/**
 * Everything envbox prints goes through here: colour only on a TTY without NO_COLOR, progress as one
 * rewritten line on a TTY and as plain step lines otherwise, nothing but the JSON document under --json.
 */
export interface Step extends Progress {
  done(summary?: string): void;
  fail(summary?: string): void;
}

export class Output {
  readonly json: boolean;
  readonly color: boolean;
  private readonly tty: boolean;
  private live: { title: string; timer: NodeJS.Timeout | undefined; detail: string; fraction: number | undefined; frame: number } | undefined;

  constructor(opts: { json?: boolean; stream?: NodeJS.WriteStream } = {}) {
    const stream = opts.stream ?? process.stderr;
    this.json = opts.json ?? false;
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
    this.color = this.tty && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');
  }

  paint(code: 'bold' | 'dim' | 'red' | 'green' | 'yellow' | 'cyan', text: string): string {
    if (!this.color) return text;
    const codes = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, cyan: 36 } as const;
    return `\x1b[${codes[code]}m${text}\x1b[0m`;
  }

  /** Result text on stdout (never under --json: the command prints its JSON document instead). */
  print(text: string): void {
    if (!this.json) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  printJson(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Notes and progress go to stderr so stdout stays clean for results and pipes. */
  info(text: string): void {
    if (this.json) return;
    this.clearLive();
    process.stderr.write(`${text}\n`);
    this.drawLive();
  }

  warn(text: string): void {
    this.clearLive();
    process.stderr.write(`${this.paint('yellow', 'warning:')} ${text}\n`);
    this.drawLive();
  }

  /** A step of long work: a spinner/bar line on a TTY, `==> title` … `    ok` lines otherwise. */
  step(title: string): Step {
    const quiet = this.json;
    const started = Date.now();
    if (!quiet && this.tty) {
      this.live = { title, detail: '', fraction: undefined, frame: 0, timer: undefined };
      this.live.timer = setInterval(() => this.tick(), 100);
      this.live.timer.unref();
      this.drawLive();
    } else if (!quiet) process.stderr.write(`==> ${title}\n`);
    let lastPlain = '';
    const finish = (ok: boolean, summary?: string) => {
      if (quiet) return;
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (this.tty) {
        this.stopLive();
        const mark = ok ? this.paint('green', '✓') : this.paint('red', '✗');
        process.stderr.write(`${mark} ${title}${summary ? ` — ${summary}` : ''} ${this.paint('dim', `(${secs}s)`)}\n`);
      } else {
        process.stderr.write(`    ${ok ? 'ok' : 'failed'}${summary ? `: ${summary}` : ''} (${secs}s)\n`);
      }
    };
    return {
      update: (detail, fraction) => {
        if (quiet) return;
        if (this.live) {
          this.live.detail = detail;
          this.live.fraction = fraction;
          this.drawLive();
        } else if (detail !== lastPlain && !this.tty) {
          // Plain output: only lines that say something new, so logs stay short.
          lastPlain = detail;
          process.stderr.write(`    ${detail}${fraction === undefined ? '' : ` (${Math.round(fraction * 100)}%)`}\n`);
        }
      },
      log: (line) => this.info(this.tty ? `  ${line}` : `    ${line}`),
      done: (summary) => finish(true, summary),
      fail: (summary) => finish(false, summary),
    };
  }

  private tick(): void {
    if (!this.live) return;
    this.live.frame++;
    this.drawLive();
  }

  private drawLive(): void {
    if (!this.live || !this.tty) return;
    const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
    const { title, detail, fraction, frame } = this.live;
    let bar = '';
    if (fraction !== undefined) {
      const filled = Math.round(Math.max(0, Math.min(1, fraction)) * 20);
      bar = ` [${'#'.repeat(filled)}${'.'.repeat(20 - filled)}]`;
    }
    const width = process.stderr.columns || 80;
    const text = `${frames[frame % frames.length]} ${title}${bar}${detail ? ` ${this.paint('dim', detail)}` : ''}`;
    process.stderr.write(`\r\x1b[2K${text.slice(0, width + (this.color ? 10 : 0))}`);
  }

  private clearLive(): void {
    if (this.live && this.tty) process.stderr.write('\r\x1b[2K');
  }

  private stopLive(): void {
    if (!this.live) return;
    clearInterval(this.live.timer);
    this.clearLive();
    this.live = undefined;
  }
}
