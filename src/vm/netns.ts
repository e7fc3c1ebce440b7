import type { ChildProcess } from "node:child_process";
import { readFile, readlink } from "node:fs/promises";
import { run, spawnOwned, terminate } from "../util/proc.js";
import { errorMessage, VmrigError } from "../util/errors.js";
import { poll } from "../util/poll.js";

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
    const made = async (): Promise<boolean> => {
      const theirs = await readlink(`/proc/${holder.pid}/ns/net`).catch(() => own);
      return theirs !== own && (await comm(holder.pid!)) === "sleep";
    };
    try {
      await poll(
        2,
        async () => ({ done: await made(), fatal: holder.exitCode !== null ? new Error("unshare exited") : undefined }),
        () => new Error("unshare did not make the namespace within 2 s"),
        5,
      );
      await ns.ip("link", "set", "lo", "up");
      return ns;
    } catch (e) {
      await ns.close();
      throw new VmrigError("could not create a network namespace for a container", {
        command: "unshare --net sleep infinity",
        output: errorMessage(e),
        hint: "vmrig needs root (or CAP_SYS_ADMIN) for containers; `vmrig doctor` checks",
      });
    }
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
    const ready = async () => {
      try {
        await this.ip("link", "set", name, "address", mac);
        return { done: true };
      } catch (e) {
        return { done: false, last: errorMessage(e), fatal: plug.exitCode !== null ? new Error("exited") : undefined };
      }
    };
    await poll(3, ready, (last) => new Error(last), 5).catch((e: unknown) => {
      throw new VmrigError(`could not plug ${name} into the vlan switch`, {
        command: `vde_plug2tap -s ${switchPath} ${name}`,
        output: stderr || errorMessage(e),
        hint: "vde_plug2tap (vde2) needs /dev/net/tun; `vmrig doctor` checks",
      });
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
