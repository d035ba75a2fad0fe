// Status output of long commands: on a terminal one line rewritten in place
// (`\r`), elsewhere (a file, a pipe, CI) plain lines at each logging step.

export interface OutputStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class StatusLine {
  private current = '';
  readonly live: boolean;

  constructor(private readonly stream: OutputStream) {
    this.live = !!stream.isTTY;
  }

  /** Replaces the live line (terminals only; elsewhere ignored). */
  update(text: string): void {
    if (!this.live) return;
    const width = (this.stream.columns ?? 120) - 1;
    this.current = text.length > width ? text.slice(0, width) : text;
    this.stream.write(`\r\x1b[K${this.current}`);
  }

  /** Prints a whole line above the live line. */
  print(line: string): void {
    if (this.live && this.current) this.stream.write('\r\x1b[K');
    this.stream.write(`${line}\n`);
    if (this.live && this.current) this.stream.write(this.current);
  }

  /** Ends the live line, leaving its last state on screen. */
  finish(): void {
    if (this.live && this.current) this.stream.write('\n');
    this.current = '';
  }
}
