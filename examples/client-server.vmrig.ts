// The seeds' client/server test: nginx on one VM, curl from the other.
import { defineTest } from "vmrig";

export default defineTest({
  name: "client-server",
  nodes: {
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
