// A machine's vlan interfaces, the same for both backends: the guest sees eth<slot> with a stable MAC.

export interface NicSpec {
  /** position in the node's vlan list, 1-based: the guest sees eth<slot> */
  slot: number;
  vlan: number;
  /** the vlan switch's socket directory */
  switchPath: string;
  /** node index (1-based, name order), for a stable MAC */
  nodeIndex: number;
}

export function macFor(nic: NicSpec): string {
  const hex = (n: number) => (n & 0xff).toString(16).padStart(2, "0");
  return `52:54:00:${hex(nic.slot)}:${hex(nic.vlan)}:${hex(nic.nodeIndex)}`;
}
