// A container server and a VM client on one vlan (SPEC §9): nginx runs at native speed in
// the container, curl runs in a QEMU VM, and /etc/hosts names both kinds.
import { defineTest } from "vmrig";

export default defineTest({
  name: "client-server-mixed",
  containers: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true, virtualHosts: { server: {} } } },
    },
  },
  nodes: {
    client: { environment: { systemPackages: ["curl"] } },
  },
  async testScript({ server, client }) {
    await server.waitForUnit("nginx.service");
    await client.succeed("curl -sf http://server/ | grep -o 'Welcome to nginx!'");
    await server.succeed("grep -q client /etc/hosts");
  },
});
