// node:test: machines started in `before`, closed in `after` (plain JavaScript: Node 20
// runs it as it is).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startMachines } from "vmrig";

/** @type {import("vmrig").Rig<"server" | "client">} */
let rig;

before(async () => {
  rig = await startMachines(
    {
      nodes: {
        server: {
          networking: { firewall: { allowedTCPPorts: [80] } },
          services: { nginx: { enable: true, virtualHosts: { server: {} } } },
        },
        client: { environment: { systemPackages: ["curl"] } },
      },
    },
    { name: "node-test-web" },
  );
  await rig.snapshot("clean");
});

after(() => rig?.close());

test("the client reaches nginx", async () => {
  await rig.server.waitForUnit("nginx.service");
  assert.match(await rig.client.succeed("curl -sf http://server/"), /Welcome to nginx!/);
});

test("a host port reaches the server's nginx", async () => {
  await rig.restore("clean");
  // no host port given: vmrig picks a free one and returns it
  const port = await rig.server.forwardPort(80);
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.match(await res.text(), /Welcome to nginx!/);
});
