// The topology every example below starts: nginx on one VM, curl on the other (the seeds'
// client/server test). The same nodes as examples/client-server.vmrig.ts, so they share
// its images and boot snapshots.
import type { MachinesDefinition } from "vmrig";

export const web = {
  nodes: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true, virtualHosts: { server: {} } } },
    },
    client: { environment: { systemPackages: ["curl"] } },
  },
} satisfies MachinesDefinition<"server" | "client">;
