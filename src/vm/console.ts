import { EventEmitter } from "node:events";
import fs from "node:fs";
import { StringDecoder } from "node:string_decoder";

// CSI/OSC sequences and other control bytes that make a log unreadable.

/** An escape sequence that is complete at the start of the string. */
const COMPLETE = /^(\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|\x1b[^[\]()])/;

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|[\x00-\x08\x0b-\x0c\x0e-\x1f]|\r/g;

/**
 * A machine's serial console: everything is appended to its log file, kept in
 * memory for `waitForConsoleText`, and emitted line by line for live display.
 */
export class ConsoleLog extends EventEmitter {
  private text = "";
  private partial = "";
  /** a UTF-8 character or an escape sequence cut off at the end of the last chunk */
  private readonly decoder = new StringDecoder("utf8");
  private held = "";
  private readonly file: fs.WriteStream;

  constructor(logPath: string) {
    super();
    this.file = fs.createWriteStream(logPath, { flags: "a" });
  }

  write(chunk: Buffer): void {
    this.file.write(chunk);
    let raw = this.held + this.decoder.write(chunk);
    // An escape sequence split between two reads would leave fragments such as `[0;1;39m`
    // in the text: hold back an unfinished one until the next chunk completes it.
    this.held = "";
    const esc = raw.lastIndexOf("\x1b");
    if (esc >= 0 && raw.length - esc < 64 && !COMPLETE.test(raw.slice(esc))) {
      this.held = raw.slice(esc);
      raw = raw.slice(0, esc);
    }
    const clean = raw.replace(ANSI, "");
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
    if (this.held) {
      this.partial += this.held.replace(ANSI, "");
      this.held = "";
    }
    if (this.partial) this.emit("line", this.partial);
    this.partial = "";
    // bounded: a local file's flush
    return new Promise((r) => this.file.end(() => r()));
  }
}
