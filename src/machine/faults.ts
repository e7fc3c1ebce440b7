import { shown, type MachineCore } from "./core.js";

/** SPEC §10: what `netem()` does to every packet the machine sends on a link. */
export interface Netem {
  /** ms added to every packet */
  delay?: number;
  /** ms of variation around `delay` */
  jitter?: number;
  /** percent of packets dropped */
  loss?: number;
  /** kbit/s the link sends at most */
  rate?: number;
  /** percent of packets sent twice */
  duplicate?: number;
}

const KEYS = ["delay", "jitter", "loss", "rate", "duplicate"] as const;

/** The `tc qdisc … netem` arguments for `n`, checked. */
export function netemArgs(n: Netem): string {
  for (const k of Object.keys(n)) {
    if (!(KEYS as readonly string[]).includes(k)) throw new Error(`netem has no option \`${k}\` (${KEYS.join(", ")})`);
  }
  for (const k of KEYS) {
    const v = n[k];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      throw new Error(`netem ${k} must be a number ≥ 0, not ${String(v)}`);
  }
  if (n.jitter && !n.delay) throw new Error("netem jitter needs a delay to vary around");
  const parts: string[] = [];
  if (n.delay) parts.push(`delay ${n.delay}ms${n.jitter ? ` ${n.jitter}ms` : ""}`);
  if (n.loss) parts.push(`loss ${n.loss}%`);
  if (n.duplicate) parts.push(`duplicate ${n.duplicate}%`);
  if (n.rate) parts.push(`rate ${n.rate}kbit`);
  // a netem with nothing to do is a plain FIFO: still a valid qdisc
  return parts.join(" ") || "delay 0ms";
}

/**
 * Shape what the machine sends on its vlan links (or on `vlan`'s only) with the guest
 * kernel's netem, as `tc qdisc replace` does: in effect when this resolves. `null` clears it.
 */
export async function netem(
  m: MachineCore,
  location: string | undefined,
  spec: Netem | null,
  opts: { vlan?: number } = {},
): Promise<void> {
  const call = `netem(${spec === null ? "null" : JSON.stringify(spec)}${opts.vlan !== undefined ? `, { vlan: ${opts.vlan} }` : ""})`;
  const vlans = m.ctx.spec().nics;
  const nics = opts.vlan === undefined ? vlans : vlans.filter((n) => n.vlan === opts.vlan);
  if (nics.length === 0) {
    throw m.fail(
      opts.vlan === undefined ? "the machine is on no vlan" : `the machine is not on vlan ${opts.vlan}`,
      call,
      {
        location,
        hint: `its vlans: ${vlans.map((n) => n.vlan).join(", ") || "none"} (virtualisation.vlans)`,
      },
    );
  }
  let args: string;
  try {
    args = spec === null ? "" : netemArgs(spec);
  } catch (e) {
    throw m.fail((e as Error).message, call, { location, kind: "config" });
  }
  const cmd = nics
    .map((n) =>
      spec === null
        ? `tc qdisc del dev eth${n.slot} root 2>/dev/null || true`
        : `tc qdisc replace dev eth${n.slot} root netem ${args}`,
    )
    .join("; ");
  await m.nested(
    spec === null ? "clearing netem" : `netem on ${nics.map((n) => `eth${n.slot}`).join(", ")}: ${args}`,
    async () => {
      const r = await m.run(cmd, call, location, 60);
      if (r.status !== 0) {
        // A container runs on the host's kernel, which may have been built without netem.
        const container = m.ctx.spec().kind === "nspawn";
        throw m.fail("tc could not set up netem", call, {
          command: cmd,
          status: r.status,
          output: shown(r),
          location,
          hint:
            container && /qdisc kind is unknown/.test(r.stderr)
              ? "a container shares the host's kernel, and it has no netem (sch_netem): `modprobe sch_netem` on the host, or declare the machine under `nodes` (a VM has Debian's kernel)"
              : "the guest kernel needs sch_netem (Debian's kernels have it)",
        });
      }
      m.log.mark("fault", spec === null ? "netem cleared" : `netem ${args}`, m.name);
    },
  );
}

const PARTITION_TABLE = "vmrig-partition";

/** The partition table's drops for one address family: from and to `addresses`, also when routed. */
function dropRules(family: "ip" | "ip6", addresses: string[]): string[] {
  if (addresses.length === 0) return [];
  const set = `{ ${addresses.join(", ")} }`;
  return [
    `add rule inet ${PARTITION_TABLE} inbound ${family} saddr ${set} drop`,
    `add rule inet ${PARTITION_TABLE} outbound ${family} daddr ${set} drop`,
    `add rule inet ${PARTITION_TABLE} through ${family} saddr ${set} drop`,
    `add rule inet ${PARTITION_TABLE} through ${family} daddr ${set} drop`,
  ];
}

/** Drop everything from and to `addresses` (IPv4 and IPv6), on top of the firewall. */
export async function isolateFrom(m: MachineCore, addresses: string[], call: string): Promise<void> {
  const v4 = addresses.filter((a) => !a.includes(":"));
  const v6 = addresses.filter((a) => a.includes(":"));
  const rules = [
    `add table inet ${PARTITION_TABLE}`,
    // before the firewall (priority 0): a partition wins over anything it allows
    `add chain inet ${PARTITION_TABLE} inbound { type filter hook input priority -10 ; }`,
    `add chain inet ${PARTITION_TABLE} outbound { type filter hook output priority -10 ; }`,
    `add chain inet ${PARTITION_TABLE} through { type filter hook forward priority -10 ; }`,
    ...dropRules("ip", v4),
    ...dropRules("ip6", v6),
  ];
  const cmd = `nft -f - <<'EOF'\n${rules.join("\n")}\nEOF`;
  const r = await m.run(cmd, call, undefined, 60);
  if (r.status !== 0)
    throw m.fail("nft could not partition the network", call, { command: cmd, status: r.status, output: shown(r) });
}

/** Undo every partition on this machine. */
export async function healPartitions(m: MachineCore, call: string): Promise<void> {
  const cmd = `nft delete table inet ${PARTITION_TABLE} 2>/dev/null || true`;
  await m.run(cmd, call, undefined, 60);
}
