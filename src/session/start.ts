import fs from "node:fs";
import path from "node:path";
import type { NodeModule } from "../config/eval.js";
import type { Machine, Terminal } from "../machine/machine.js";
import { ocrAvailable } from "../machine/ocr.js";
import { VmrigError, configError, errorMessage } from "../util/errors.js";
import { commandExists, withCancellation, within } from "../util/proc.js";
import { checkMachineNames, type SubtestResult, type TestContext, type Video } from "./context.js";
import { checkConditions, makeContext, type ActiveCondition } from "./globals.js";
import { sweepLeftoversOnce } from "./leftovers.js";
import { Logger } from "./logger.js";
import { createTopology, type Accel, type Topology } from "./topology.js";

export type { Accel };

/** The machines of a run: nodes are QEMU VMs, containers systemd-nspawn (SPEC §9), one name space. */
export interface MachinesDefinition<N extends string = string, C extends string = string> {
  nodes?: { [K in N]: NodeModule<NoInfer<N | C>> };
  containers?: { [K in C]: NodeModule<NoInfer<N | C>> };
  defaults?: NodeModule<NoInfer<N | C>>;
}

export interface StartOptions {
  /** names the run in logs and reports ([a-z0-9-]+); default "machines" */
  name?: string;
  /** log.txt, consoles, screenshots and failure artifacts; default `./vmrig-results/<name>` */
  resultDir?: string;
  /** aborts building and booting: the machines started so far are stopped and the promise rejects */
  signal?: AbortSignal;
  /**
   * "all" (the default): every machine is booted or restored before the promise resolves.
   * "on-use": each machine starts on its first call (or `start()`, `startAll()`).
   */
  start?: "all" | "on-use";
  /** OCR (getScreenText, waitForText, clickText); needs tesseract on the host */
  enableOCR?: boolean;
  /** "auto" (the default): KVM when it works, else software emulation */
  accel?: "auto" | Accel;
  /** restore boot snapshots (SPEC §7); default true */
  snapshots?: boolean;
  /** keep the machines' disks under the cache between runs (boot snapshots are then off) */
  keepVmState?: boolean;
  /** live output, a line at a time, or false for none (log.txt keeps everything); default stderr */
  print?: ((line: string) => void) | false;
  /** the folder that relative paths in the configs resolve from; default the working directory */
  sourceDir?: string;
  /** record every VM's screen (`virtualisation.graphics`) into `resultDir`/video-NAME.webm; needs ffmpeg */
  video?: boolean;
  /** @internal the runner's log (it writes log.txt before and after the machines) */
  logger?: Logger;
  /** @internal the test file: its images become a GC root */
  testFile?: string;
  /** @internal the terminal Machine.shell() uses (the REPL lends its own) */
  terminal?: () => Terminal;
  /** @internal the REPL: graphical machines serve their display over VNC */
  interactive?: boolean;
}

/** Names of the rig that no machine may take. */
const RIG_NAMES = ["close", "saveFailureArtifacts", "subtests", "videos"] as const;

/**
 * Started machines and the globals of SPEC §4 over them: `rig.server.succeed(…)`,
 * `rig.snapshot("clean")`, `rig.partition([a], [b])`. `close()` (or `await using`) stops
 * every machine and switch and removes the run's temporary files, as `vmrig run` does.
 */
export type Rig<N extends string = string, C extends string = never> = TestContext<N, C> & {
  /** stop every machine and switch and remove the run's temporary files; safe to call twice */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  /** a screenshot, the journal's tail and X's log of every machine still up, into `dir` (default: the result folder), as a failed `vmrig run` keeps them */
  saveFailureArtifacts(dir?: string): Promise<void>;
  /** the subtests run so far, with their outcomes */
  readonly subtests: SubtestResult[];
  /** with `video`: each recorded machine's video, once `close()` has resolved */
  readonly videos: Video[];
};

/**
 * Start machines as `vmrig run` does before a script (SPEC §12): evaluate the configs
 * (the same errors, before anything is built), build the images, bring up the networks,
 * and restore or boot the machines.
 *
 * ```ts
 * await using rig = await startMachines({ nodes: { server: { services: { nginx: { enable: true } } } } });
 * await rig.server.waitForUnit("nginx");
 * ```
 */
export async function startMachines<const N extends string = never, const C extends string = never>(
  def: MachinesDefinition<N, C>,
  opts: StartOptions = {},
): Promise<Rig<N, C>> {
  const name = opts.name ?? "machines";
  if (!/^[a-z0-9-]+$/.test(name))
    throw configError(`startMachines: name ${JSON.stringify(name)} must match [a-z0-9-]+ (it names the run's folders)`);
  checkMachineNames(
    `startMachines(${name})`,
    Object.keys(def.nodes ?? {}),
    Object.keys(def.containers ?? {}),
    RIG_NAMES,
  );
  await checkOcr(name, opts.enableOCR ?? false);
  if (opts.video && !commandExists("ffmpeg"))
    throw configError(`${name}: --video needs ffmpeg, which is not installed`, {
      hint: "apt install ffmpeg (scripts/setup.sh installs it); `vmrig doctor` checks",
    });
  const resultDir = path.resolve(opts.resultDir ?? path.join("vmrig-results", name));
  fs.mkdirSync(resultDir, { recursive: true });
  const ownLog = opts.logger
    ? undefined
    : new Logger(path.join(resultDir, "log.txt"), opts.print === false ? () => undefined : opts.print);
  const logger = (opts.logger ?? ownLog) as Logger;
  await sweepLeftoversOnce((line) => logger.log(line));
  const signal = opts.signal;
  let topology: Topology | undefined;
  const stop = async () => {
    await topology?.close();
    await ownLog?.close();
  };
  try {
    signal?.throwIfAborted();
    const conditions = new Set<ActiveCondition>();
    // builds stop at once on abort (util/proc.ts withCancellation); a boot ends at close()
    topology = await untilAborted(
      withCancellation(signal, () =>
        createTopology(
          { name, ...(def as MachinesDefinition) },
          {
            logger,
            resultDir,
            sourceDir: opts.sourceDir ?? process.cwd(),
            accel: opts.accel ?? "auto",
            keepVmState: opts.keepVmState ?? false,
            snapshots: opts.snapshots ?? true,
            beforeCommand: () => checkConditions(conditions),
            enableOCR: opts.enableOCR ?? false,
            video: opts.video ?? false,
            ...(opts.testFile ? { testFile: opts.testFile } : {}),
            ...(opts.terminal ? { terminal: opts.terminal } : {}),
            ...(opts.interactive ? { interactive: true } : {}),
          },
        ),
      ),
      signal,
      // a topology made after the abort is closed as soon as it exists
      (t) => void t.close(),
      BUILD_SETTLE_MS,
    );
    const subtests: SubtestResult[] = [];
    const ctx = makeContext(topology.machines, topology.configs, logger, subtests, {
      conditions,
      vlans: topology.vlans,
      driver: { testName: name, resultDir, accel: topology.accel },
      stateDir: topology.stateDir,
      vms: topology,
    });
    const machines = topology.machines;
    let closed: Promise<void> | undefined;
    const close = () => (closed ??= stop());
    const rig = Object.assign(ctx, {
      close,
      [Symbol.asyncDispose]: close,
      saveFailureArtifacts: (dir?: string) => collectFailureArtifacts(machines, dir ?? resultDir, logger),
      subtests,
      videos: topology.videos,
    });
    if ((opts.start ?? "all") === "all") await untilAborted(ctx.startAll(), signal);
    return rig as unknown as Rig<N, C>;
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * `p`, or a rejection once `signal` aborts; `late` gets p's value if it comes after.
 * `settleMs`: how long to let `p` end first (an image build stopped by the abort removes
 * its half-made entry, and the run must not exit before it has).
 */
async function untilAborted<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
  late?: (v: T) => void,
  settleMs = 0,
): Promise<T> {
  if (!signal) return p;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      const after = p.then((v) => late?.(v)).catch(() => undefined);
      void within(after, settleMs).then(() =>
        reject(new VmrigError(`interrupted while starting the machines (${String(signal.reason ?? "signal")})`)),
      );
    };
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    // what the abort stopped (a build: "sh was stopped") fails as the interruption it is
    const stopped = p.catch((e: unknown) => {
      if (signal.aborted) return aborted;
      throw e;
    });
    return await Promise.race([stopped, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/** How long an interrupted start waits for its stopped builds to clean up (they are killed at once). */
const BUILD_SETTLE_MS = 10_000;

/** OCR asked for without tesseract: bad input, said before anything is built. */
async function checkOcr(name: string, enableOCR: boolean): Promise<void> {
  if (!enableOCR) return;
  const missing = await ocrAvailable();
  if (missing)
    throw configError(`test ${name} sets enableOCR, but ${missing}`, {
      hint: "`vmrig doctor` lists what the host is missing",
    });
}

const XORG_MARK = "\n--- vmrig: Xorg.0.log ---\n";
const FAILURE_LOGS = `journalctl --no-pager -n 100 2>&1 || true; if [ -e /var/log/Xorg.0.log ]; then printf '${XORG_MARK.replace(/\n/g, "\\n")}'; cat /var/log/Xorg.0.log; fi`;

/** On failure: a screenshot, the journal's tail and X's log (graphical machines) of every machine still up. */
async function collectFailureArtifacts(machines: Machine[], resultDir: string, logger: Logger): Promise<void> {
  fs.mkdirSync(resultDir, { recursive: true });
  for (const m of machines) {
    if (!m.pid) continue;
    try {
      if (!(await within(m.isUp(), 3000))) continue;
      // (a container has no screen: its journal is still kept)
      await m.screenshot(path.join(resultDir, `failure-${m.name}.png`)).catch(() => undefined);
      // one command for both (a machine without X has no Xorg.0.log, and is not asked twice)
      const out = (await m.execute(FAILURE_LOGS, { timeout: 20 })).stdout;
      const [journal, xorg] = out.split(XORG_MARK);
      fs.writeFileSync(path.join(resultDir, `failure-${m.name}-journal.txt`), journal ?? "");
      if (xorg !== undefined) fs.writeFileSync(path.join(resultDir, `failure-${m.name}-Xorg.0.log`), xorg);
    } catch (e) {
      logger.detail(`could not collect failure artifacts: ${errorMessage(e)}`, m.name);
    }
  }
}
