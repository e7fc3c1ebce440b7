// Compile-time tests of vmrig's types, checked by `npm run typecheck` (part of `npm test`).
// Each @ts-expect-error must be an error, or tsc fails.
import { defineModule, defineTest, lib, type Machine } from "vmrig";

export const typed = defineTest({
  name: "types",
  nodes: {
    server: { services: { nginx: { enable: true } } },
    client: ({ nodes }) => ({
      // `nodes` is typed by the test's node names
      networking: { extraHosts: `${nodes.server.config.networking.hostName} alias` },
    }),
  },
  async testScript({ server, client, nodes, startAll }) {
    const s: Machine = server;
    const out: string = await client.succeed("true");
    const port: number[] = nodes.server.config.networking.firewall.allowedTCPPorts;
    await startAll();
    void [s, out, port];
  },
});

export const typoInScript = defineTest({
  name: "typo",
  nodes: { server: {} },
  // @ts-expect-error: there is no machine called `sever`
  async testScript({ sever }) {
    await (sever as Machine).succeed("true");
  },
});

export const typoInOption = defineTest({
  name: "option-typo",
  // @ts-expect-error: `ngnix` is not an option
  nodes: { server: { services: { ngnix: { enable: true } } } },
  async testScript() {},
});

export const wrongType = defineTest({
  name: "wrong-type",
  // @ts-expect-error: ports are numbers
  nodes: { server: { networking: { firewall: { allowedTCPPorts: ["80"] } } } },
  async testScript() {},
});

export const module = defineModule(({ config }) => ({
  virtualisation: { memorySize: lib.mkDefault(config.virtualisation.memorySize * 2) },
}));

// A module from defineModule() (typed for any node names) must not widen the
// machine names to `string`: the script's destructuring stays checked.
const shared = defineModule(({ config }) => ({ networking: { extraHosts: config.networking.hostName } }));
export const sharedModuleKeepsNames = defineTest({
  name: "shared-module",
  nodes: { server: shared, client: { imports: [shared] } },
  async testScript({ server, client }) {
    const both: Machine[] = [server, client];
    await Promise.all(both.map((m) => m.succeed("true")));
  },
});
export const sharedModuleTypo = defineTest({
  name: "shared-module-typo",
  nodes: { server: shared },
  // @ts-expect-error: there is no machine called `sever`, even with a shared module
  async testScript({ sever }) {
    await (sever as Machine).succeed("true");
  },
});

// Containers (SPEC §9): typed together with the nodes; what needs a VM is a type error on a container.
export const mixed = defineTest({
  name: "mixed",
  nodes: { client: {} },
  containers: {
    server: ({ nodes }) => ({ networking: { extraHosts: `${nodes.client.config.networking.hostName} c` } }),
  },
  async testScript({ server, client, nodes }) {
    await server.succeed("true");
    await server.waitForUnit("multi-user.target");
    await client.screenshot("client");
    // @ts-expect-error: a container has no screen
    void server.screenshot;
    // @ts-expect-error: nor QMP
    void server.qmp;
    const name: string = nodes.server.config.networking.hostName;
    void name;
  },
});
export const containersOnly = defineTest({
  name: "containers-only",
  containers: { a: {}, b: {} },
  // @ts-expect-error: there is no machine called `c`
  async testScript({ a, c }) {
    await a.succeed("true");
    void c;
  },
});
