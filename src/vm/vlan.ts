import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { spawnOwned, terminate } from "../util/proc.js";
import { errorMessage, VmrigError } from "../util/errors.js";
import { poll } from "../util/poll.js";

/**
 * One private switch per vlan: a vde_switch in the foreground as our child
 * (a daemonised switch outlives its parent). No host interface joins it.
 */
export class VlanSwitch {
  private child: ChildProcess | undefined;
  readonly path: string;

  constructor(
    readonly vlan: number,
    stateDir: string,
  ) {
    this.path = path.join(stateDir, `vlan${vlan}`);
  }

  async start(): Promise<void> {
    this.child = spawnOwned("vde_switch", ["--sock", this.path, "--dirmode", "0700"], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    this.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    // vde_switch exits when its stdin closes, unless it has one: keep it open.
    const ctl = path.join(this.path, "ctl");
    const child = this.child;
    const up = () => ({
      done: fs.existsSync(ctl),
      fatal: child.exitCode !== null ? new Error(`vde_switch exited (${child.exitCode})`) : undefined,
    });
    await poll(5, up, () => new Error("no control socket within 5 s"), 20).catch((e: unknown) => {
      throw new VmrigError(`the switch for vlan ${this.vlan} did not start`, {
        command: `vde_switch --sock ${this.path}`,
        output: stderr || errorMessage(e),
        hint: "is vde2 installed? `vmrig doctor` checks",
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child) await terminate(this.child, 1000);
    fs.rmSync(this.path, { recursive: true, force: true });
  }
}
