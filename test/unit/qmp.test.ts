import net from "node:net";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Qmp, QmpError } from "../../src/vm/qmp.js";

let server: net.Server | undefined;
afterEach(() => server?.close());

/** A fake QEMU: greets, answers commands from a table, can send events. */
async function fakeQemu(answers: Record<string, unknown>) {
  const sock = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-qmp-")), "qmp");
  let peer!: net.Socket;
  const connected = new Promise<void>((resolve) => {
    server = net.createServer((s) => {
      peer = s;
      s.write(JSON.stringify({ QMP: { version: {}, capabilities: [] } }) + "\n");
      let buf = "";
      s.on("data", (d) => {
        buf += d.toString();
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl)) as { execute: string };
          buf = buf.slice(nl + 1);
          const a = msg.execute === "qmp_capabilities" ? {} : answers[msg.execute];
          const reply =
            JSON.stringify(
              a instanceof Error ? { error: { class: "GenericError", desc: a.message } } : { return: a ?? {} },
            ) + "\n";
          // a command named slow-N is answered after N ms (QEMU answers in order: so does this)
          const delay = /^slow-(\d+)$/.exec(msg.execute);
          if (!delay) {
            s.write(reply);
            continue;
          }
          s.pause();
          setTimeout(() => {
            s.write(reply);
            s.resume();
          }, Number(delay[1]));
        }
      });
      resolve();
    });
    server.listen(sock);
  });
  const client = net.connect(sock);
  await connected;
  return { qmp: new Qmp(client), event: (e: object) => peer.write(JSON.stringify(e) + "\n") };
}

describe("QMP client", () => {
  it("gives up on a command QEMU does not answer in time, and keeps later replies matched", async () => {
    const { qmp } = await fakeQemu({ "query-status": { status: "running" } });
    await qmp.handshake();
    const late = await qmp.execute("slow-3000", undefined, 100).catch((e: unknown) => e);
    expect(String(late)).toContain("QEMU did not answer the QMP command slow-3000 within 0.1 s");
    expect(await qmp.execute("query-status")).toEqual({ status: "running" });
  });

  it("handshakes, matches replies to commands and surfaces errors", async () => {
    const { qmp } = await fakeQemu({ "query-status": { status: "running" }, bad: new Error("no such thing") });
    await qmp.handshake();
    const [a, b] = await Promise.all([qmp.execute("query-status"), qmp.execute("query-status")]);
    expect(a).toEqual({ status: "running" });
    expect(b).toEqual({ status: "running" });
    const err = await qmp.execute("bad").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).message).toContain("no such thing");
    qmp.close();
  });

  it("finds events that already arrived and waits for new ones", async () => {
    const { qmp, event } = await fakeQemu({});
    await qmp.handshake();
    event({ event: "STOP" });
    await new Promise((r) => setTimeout(r, 50));
    expect((await qmp.waitForEvent((e) => e.event === "STOP")).event).toBe("STOP");
    const later = qmp.waitForEvent((e) => e.event === "RESUME");
    event({ event: "RESUME" });
    expect((await later).event).toBe("RESUME");
    qmp.close();
  });
});
