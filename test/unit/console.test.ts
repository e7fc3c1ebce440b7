import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConsoleLog } from "../../src/vm/console.js";

describe("the serial console's lines", () => {
  it("are clean even when an escape sequence or a UTF-8 character is split between reads", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-console-"));
    try {
      const log = new ConsoleLog(path.join(dir, "c.log"));
      const lines: string[] = [];
      log.on("line", (l: string) => lines.push(l));
      const bytes = Buffer.from("[  \x1b[0;32mOK  \x1b[0m] Started \x1b[0;1;39mnginx.service\x1b[0m – ünïcode\nnext\n");
      // every split point, one byte at a time
      for (let i = 0; i < bytes.length; i++) log.write(bytes.subarray(i, i + 1));
      await log.close();
      expect(lines).toEqual(["[  OK  ] Started nginx.service – ünïcode", "next"]);
      expect(log.all).toBe("[  OK  ] Started nginx.service – ünïcode\nnext\n");
      // the file keeps the raw bytes
      expect(fs.readFileSync(path.join(dir, "c.log")).equals(bytes)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
