import type { Duplex } from "node:stream";
import type { Backdoor } from "./backdoor.js";
import type { ConsoleLog } from "./console.js";

export type Accel = "kvm" | "tcg";

/** Which kind of machine runs a node: a QEMU VM (`nodes`) or a systemd-nspawn container (`containers`). */
export type BackendKind = "qemu" | "nspawn";

/**
 * A started machine of any backend. It exists only once its channels are connected,
 * so none of them is ever missing: there is no "not started" state to check for.
 */
export interface Guest {
  readonly kind: BackendKind;
  readonly name: string;
  /** the host process that runs the machine (QEMU, systemd-nspawn), for leak checks */
  readonly pid: number;
  /** the process is still running */
  readonly running: boolean;
  /** the root shell in the guest */
  readonly backdoor: Backdoor;
  /** what the guest's serial console printed */
  readonly console: ConsoleLog;
  /** a raw byte channel into the guest, for copyFromHost */
  readonly xfer: Duplex;
  /** the terminal of an interactive shell, for Machine.shell() */
  readonly shell: Duplex;
  /** process start → backdoor answering, in ms */
  readonly bootMs: number;
  /** what this start was: a cold boot or a restore (and from what) */
  readonly origin: string;
  /** take the machine's vlan links down or up */
  setLinks(up: boolean): Promise<void>;
  /** resolves when the process has exited */
  waitForExit(): Promise<void>;
  /** stop the process now */
  kill(): Promise<void>;
  on(event: "exit", fn: () => void): this;
  on(event: "console", fn: (line: string) => void): this;
  off(event: "console", fn: (line: string) => void): this;
}
