import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_TIMEOUT, quote, shown, type MachineCore } from "./core.js";
import { waitFor } from "./waiting.js";
import { errorMessage } from "../util/errors.js";
import { run, shellQuote } from "../util/proc.js";

/** A host file or directory into the guest: a tar streamed into the transfer port, unpacked beside the target, then moved over it. */
export async function copyFromHost(
  m: MachineCore,
  location: string | undefined,
  source: string,
  target: string,
): Promise<void> {
  const call = `copyFromHost(${quote(source)}, ${quote(target)})`;
  const src = path.resolve(source);
  if (!fs.existsSync(src)) throw m.fail(`host path ${src} does not exist`, call, { location });
  const g = await m.up();
  await m.nested(`copying ${source} to ${target}`, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-xfer-"));
    try {
      const tar = path.join(tmp, "x.tar");
      await run("tar", ["-cf", tar, "-C", path.dirname(src), path.basename(src)]);
      const size = fs.statSync(tar).size;
      // The guest reads exactly `size` bytes from the transfer port while we stream the archive into it.
      const dst = shellQuote(target);
      const cmd = [
        // find_port: the backdoor's own lookup of a virtio port by name (guest/backdoor)
        "port=$(find_port vmrig.xfer)",
        `mkdir -p "$(dirname ${dst})"`,
        `t=$(mktemp -d -p "$(dirname ${dst})" .vmrig-xfer-XXXXXX)`,
        `head -c ${size} "$port" | tar -x -C "$t"`,
        `rm -rf ${dst}`,
        `mv "$t"/${shellQuote(path.basename(src))} ${dst}`,
        `rmdir "$t"`,
      ].join("; ");
      const running = m.run(cmd, call, location, Math.max(120, size / 1e6));
      const rs = fs.createReadStream(tar);
      // bounded: raced with the guest command, which has its timeout
      const piped = new Promise<void>((resolve, reject) => {
        rs.on("error", reject);
        rs.on("end", () => resolve());
        rs.pipe(g.xfer, { end: false });
      });
      // The guest's command has a deadline; the pipe has none of its own (a guest that stops
      // reading stalls it), so the command's end ends the wait, and a host read error at once.
      const r = await Promise.race([running, piped.then(() => running)]);
      rs.unpipe(g.xfer);
      rs.destroy();
      if (r.status !== 0)
        throw m.fail(`copy failed with exit status ${r.status}`, call, {
          command: cmd,
          status: r.status,
          output: shown(r),
          location,
        });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/** A guest file or directory to the host (default: the test's result folder), as a tar over the command channel. */
export async function copyFromMachine(
  m: MachineCore,
  location: string | undefined,
  source: string,
  targetDir?: string,
): Promise<string> {
  const call = `copyFromMachine(${quote(source)})`;
  const dir = path.resolve(targetDir ?? m.ctx.resultDir);
  fs.mkdirSync(dir, { recursive: true });
  return m.nested(`copying ${source} from the machine to ${path.relative(process.cwd(), dir) || "."}`, async () => {
    const g = await m.up();
    const cmd = `tar -c -C "$(dirname ${shellQuote(source)})" "$(basename ${shellQuote(source)})"`;
    const r = await g.backdoor.run(cmd, 3600).catch((e: unknown) => {
      throw m.fail(`copy failed: ${errorMessage(e)}`, call, { command: cmd, location });
    });
    if (r.status !== 0)
      throw m.fail(`copy failed with exit status ${r.status}`, call, {
        command: cmd,
        status: r.status,
        output: r.stderr.toString(),
        location,
      });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-xfer-"));
    try {
      fs.writeFileSync(path.join(tmp, "x.tar"), r.stdout);
      await run("tar", ["-xf", path.join(tmp, "x.tar"), "-C", dir]);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    return path.join(dir, path.basename(source));
  });
}

export function waitForFile(
  m: MachineCore,
  location: string | undefined,
  file: string,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const call = `waitForFile(${quote(file)})`;
  return waitFor(
    m,
    { call, heading: `waiting for file ${file}`, what: `${file} to exist`, timeout, location },
    async () => {
      const r = await m.run(`test -e ${shellQuote(file)}`, call, location, 60);
      return { done: r.status === 0, last: `${file} does not exist` };
    },
  );
}
