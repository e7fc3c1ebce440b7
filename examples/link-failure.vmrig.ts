// A link failure: block() takes a machine's network links down (the guest
// sees NO-CARRIER), unblock() brings them back; the service recovers.
import { defineTest } from "vmrig";

export default defineTest({
  name: "link-failure",
  nodes: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true } },
    },
    client: {},
  },
  async testScript({ server, client, startAll, subtest }) {
    await startAll();
    await server.waitForUnit("nginx.service");
    await client.succeed("curl -sf --max-time 10 http://server/ >/dev/null");

    await subtest("the server drops off the network", async () => {
      await server.block();
      await client.fail("curl -sf --max-time 3 http://server/");
      await server.succeed("ip link show eth1 | grep -q NO-CARRIER");
    });

    await subtest("the server comes back", async () => {
      await server.unblock();
      await client.waitUntilSucceeds("curl -sf --max-time 3 http://server/ >/dev/null", 60);
    });
  },
});
