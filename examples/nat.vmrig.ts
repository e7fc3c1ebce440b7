// A client behind a NAT router reaches a server on another network; the server
// cannot reach the client. The client's gateway is read from the router's
// evaluated config, as a NixOS module would. The router filters what it forwards
// (firewall.filterForward): only replies and what NAT sends out pass.
import { defineTest } from "vmrig";

export default defineTest({
  name: "nat",
  nodes: {
    client: ({ nodes }) => ({
      virtualisation: { vlans: [1] },
      networking: { defaultGateway: nodes.router.config.networking.interfaces.eth1!.ipv4.addresses[0]!.address },
    }),
    router: {
      virtualisation: { vlans: [1, 2] },
      networking: {
        nat: { enable: true, internalInterfaces: ["eth1"], externalInterface: "eth2" },
        firewall: { filterForward: true },
      },
    },
    server: {
      virtualisation: { vlans: [2] },
      networking: { firewall: { allowedTCPPorts: [80] } },
      services: { nginx: { enable: true } },
    },
  },
  async testScript({ client, router, server, startAll, nodes }) {
    await startAll();
    await server.waitForUnit("nginx.service");
    await router.waitForUnit("nftables.service");

    await client.succeed("curl -sf --max-time 10 http://server/ | grep -q 'Welcome to nginx'");
    // The server saw the router's address, not the client's: the request was translated.
    const routerExternal = nodes.router.config.networking.interfaces.eth2!.ipv4.addresses[0]!.address;
    await server.succeed(`grep -q '^${routerExternal} ' /var/log/nginx/access.log`);

    // The other way: no route to the client's network, and even with one the
    // router forwards nothing that was not started inside.
    await server.fail("ping -c 1 -W 2 client");
    await server.succeed(`ip route add 192.168.1.0/24 via ${routerExternal}`);
    await server.fail("ping -c 1 -W 2 client");
  },
});
