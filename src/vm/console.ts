import { EventEmitter } from "node:events";
import fs from "node:fs";

// CSI/OSC sequences and other control bytes that make a log unreadable.

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|[\x00-\x08\x0b-\x0c\x0e-\x1f]|\r/g;

/**
 * A machine's serial console: everything is appended to its log file, kept in
 * memory for `waitForConsoleText`, and emitted line by line for live display.
 */
export class ConsoleLog extends EventEmitter {
  private text = "";
  private partial = "";
  private readonly file: fs.WriteStream;

  constructor(logPath: string) {
    super();
    this.file = fs.createWriteStream(logPath, { flags: "a" });
  }

  write(chunk: Buffer): void {
    this.file.write(chunk);
    const clean = chunk.toString("utf8").replace(ANSI, "");
    this.text += clean;
    const lines = (this.partial + clean).split("\n");
    this.partial = lines.pop()!;
    for (const l of lines) this.emit("line", l);
    this.emit("data");
  }

  /**
   * What the console of a saved boot printed, for a machine restored from it: the file
   * gets it under `header`, and `waitForConsoleText` finds boot messages as after a boot.
   */
  replay(text: string, header: string): void {
    this.file.write(`${header}\n${text}${text.endsWith("\n") ? "" : "\n"}[vmrig: end of the saved boot's console]\n`);
    this.text += text;
  }

  /** Everything the console has printed since the VM started (escape sequences removed). */
  get all(): string {
    return this.text;
  }

  close(): Promise<void> {
    if (this.partial) this.emit("line", this.partial);
    this.partial = "";
    return new Promise((r) => this.file.end(() => r()));
  }
}
