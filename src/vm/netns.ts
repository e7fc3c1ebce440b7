import type { ChildProcess } from "node:child_process";
import { readFile, readlink } from "node:fs/promises";
import { run, sleep, spawnOwned, terminate } from "../util/proc.js";
import { VmrigError } from "../util/errors.js";

/**
 * A private network namespace for one container: held open by a sleeping child of ours
 * (it dies with vmrig, and the namespace with it), with one tap per vlan plugged into
 * that vlan's switch. Nothing here touches the host's own network: every `ip` command
 * runs inside the namespace.
 */
export class NetNamespace {
  private readonly plugs: ChildProcess[] = [];

  private constructor(private readonly holder: ChildProcess) {}

  static async create(): Promise<NetNamespace> {
    const holder = spawnOwned("unshare", ["--net", "sleep", "infinity"], { stdio: "ignore" });
    const ns = new NetNamespace(holder);
    // unshare has made the namespace once it has exec'd sleep: its net namespace differs from ours
    const own = await readlink("/proc/self/ns/net");
    for (let i = 0; i < 200; i++) {
      if (holder.exitCode !== null) break;
      const theirs = await readlink(`/proc/${holder.pid}/ns/net`).catch(() => own);
      if (theirs !== own && (await comm(holder.pid!)) === "sleep") {
        await ns.ip("link", "set", "lo", "up");
        return ns;
      }
      await sleep(5);
    }
    await ns.close();
    throw new VmrigError("could not create a network namespace for a container", {
      command: "unshare --net sleep infinity",
      hint: "vmrig needs root (or CAP_SYS_ADMIN) for containers; `vmrig doctor` checks",
    });
  }

  /** `/proc/PID/ns/net`, for nspawn's --network-namespace-path and nsenter */
  get path(): string {
    return `/proc/${this.holder.pid}/ns/net`;
  }

  /** Run `ip ARGS` inside the namespace. */
  async ip(...args: string[]): Promise<void> {
    await run("nsenter", [`--net=${this.path}`, "ip", ...args]);
  }

  /** A tap named `name` with `mac`, plugged into the vde switch at `switchPath`. */
  async addTap(name: string, mac: string, switchPath: string): Promise<void> {
    const plug = spawnOwned("nsenter", [`--net=${this.path}`, "vde_plug2tap", "-s", switchPath, name], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.plugs.push(plug);
    let stderr = "";
    plug.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    for (let i = 0; i < 400; i++) {
      if (plug.exitCode !== null) break;
      try {
        await this.ip("link", "set", name, "address", mac);
        return;
      } catch {
        await sleep(5);
      }
    }
    throw new VmrigError(`could not plug ${name} into the vlan switch`, {
      command: `vde_plug2tap -s ${switchPath} ${name}`,
      output: stderr,
      hint: "vde_plug2tap (vde2) needs /dev/net/tun; `vmrig doctor` checks",
    });
  }

  /** Carrier off: the interface keeps its addresses, but nothing passes (a cable pulled). */
  async setCarrier(name: string, up: boolean): Promise<void> {
    await this.ip("link", "set", name, "carrier", up ? "on" : "off");
  }

  async close(): Promise<void> {
    await Promise.all(this.plugs.map((p) => terminate(p, 1000)));
    await terminate(this.holder, 1000);
  }
}

async function comm(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
}
