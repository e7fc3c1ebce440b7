// The seeds' client/server test with both machines as systemd-nspawn containers (SPEC §9):
// the same modules, the same vlan, native speed without KVM.
import { defineTest } from "vmrig";

export default defineTest({
  name: "client-server-containers",
  containers: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true, virtualHosts: { server: {} } } },
    },
    client: { environment: { systemPackages: ["curl"] } },
  },
  async testScript({ server, client }) {
    await server.waitForUnit("nginx.service");
    await client.succeed("curl -sf http://server/ | grep -o 'Welcome to nginx!'");
  },
});
