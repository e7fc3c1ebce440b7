// What the benchmarks share: number formatting, scratch folders, a topology to time.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Logger } from "../dist/session/logger.js";
import { createTopology } from "../dist/session/topology.js";

export const root = path.resolve(import.meta.dirname, "..");
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const s = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** A table row printer: what, value, target, in columns of the given widths. */
export const rowPrinter =
  (whatWidth, valueWidth) =>
  (what, value, target = "") =>
    console.log(`${what.padEnd(whatWidth)} ${String(value).padStart(valueWidth)}  ${target}`);

const dirs = [];

/** A temporary folder, removed by cleanup(). */
export function scratch(prefix = "vmrig-bench-") {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function cleanup() {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** The benchmarks' desktop machine: IceWM with alice logged in, plus `extra` (packages, memory). */
export function desktopNode(extra) {
  return {
    users: { users: { alice: { isNormalUser: true } } },
    services: {
      xserver: {
        enable: true,
        displayManager: { autoLogin: { enable: true, user: "alice" } },
        windowManager: { icewm: { enable: true } },
      },
    },
    ...extra,
  };
}

/** A test definition's machines, ready to start, with its log in a scratch folder. */
export function topology(def, snapshots = true, enableOCR = false) {
  const dir = scratch();
  return createTopology(def, {
    logger: new Logger(path.join(dir, "log.txt"), () => {}),
    resultDir: dir,
    sourceDir: root,
    accel: "auto",
    keepVmState: false,
    snapshots,
    enableOCR,
  });
}
