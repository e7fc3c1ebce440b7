import type { Definition } from "./merge.js";
import { configError } from "../util/errors.js";

/**
 * Options that only mean something for a VM, and why: a container's module that sets one
 * is a configuration error rather than a silent no-op. (A test's `defaults` may set them:
 * they apply to the nodes and mean nothing to the containers.)
 */
const VM_ONLY: Record<string, string> = {
  "virtualisation.memorySize": "a container shares the host's memory",
  "virtualisation.cores": "a container runs on the host's cores",
  "virtualisation.diskSize": "a container's root is an overlay on the host's file system, with its free space",
  "virtualisation.emptyDiskImages": "a container has no block devices of its own",
  "virtualisation.graphics": "a container has no display",
  "virtualisation.resolution": "a container has no display",
  "virtualisation.qemu": "a container is not run by QEMU",
  "virtualisation.forwardPorts": "a container has no user-mode NIC: call forwardPort() in the script instead",
  "boot.kernelParams": "a container runs on the host's kernel",
  "boot.kernelPackages": "a container runs on the host's kernel",
  "services.xserver": "a container has no display, keyboard or pointer for an X server (SPEC §8)",
};

type Tree = Record<string, unknown>;

/** A definition's value at a dotted path, through mkForce/mkDefault/mkOrder wrappers. */
function at(value: unknown, dotted: string): unknown {
  let v = value;
  for (const key of dotted.split(".")) {
    while (v && typeof v === "object" && ("_vmrigPriority" in v || "_vmrigOrder" in v))
      v = (v as unknown as { value: unknown }).value;
    if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
    v = (v as Tree)[key];
  }
  return v;
}

/** Throws if a container's own modules set an option that only a VM has. */
export function checkContainerDefinitions(name: string, defs: readonly Definition[]): void {
  for (const d of defs) {
    if (!d.source.startsWith(`containers.${name}`)) continue;
    for (const [option, why] of Object.entries(VM_ONLY)) {
      if (at(d.value, option) === undefined) continue;
      throw configError(`${d.source} sets ${option}, which means nothing for a container: ${why}`, {
        hint: `remove it, or declare ${name} under \`nodes\` to make it a VM`,
      });
    }
  }
}
