// nixpkgs nixos/tests/redis.nix, its Python test script verbatim (SPEC §11), as a function
// of the evaluated nodes as in NixOS (`testScript = { nodes, ... }: …`). Adapted: the
// script's `${pkg}` (`package` is a reserved word in TypeScript: `${pkg}` here) is
// Debian's prefix, /usr (NixOS: the Redis package in the store).
import { defineTest } from "vmrig";

export default defineTest({
  name: "redis",
  nodes: {
    machine: {
      services: {
        redis: {
          servers: { "": { enable: true }, test: { enable: true } },
        },
      },
      users: {
        users: Object.fromEntries(
          ["", "-test"].map((suffix) => [
            `member${suffix}`,
            {
              createHome: false,
              description: `A member of the redis${suffix} group`,
              isNormalUser: true,
              extraGroups: [`redis${suffix}`],
            },
          ]),
        ),
      },
    },
  },
  testScript: ({ nodes }) => {
    const { redis } = nodes.machine.services;
    const pkg = "/usr";
    return `
      start_all()
      machine.wait_for_unit("redis")
      machine.wait_for_unit("redis-test")

      # The unnamed Redis server still opens a port for backward-compatibility
      machine.wait_for_open_port(6379)

      machine.wait_for_file("${redis.servers[""]!.unixSocket}")
      machine.wait_for_file("${redis.servers["test"]!.unixSocket}")

      # The unix socket is accessible to the redis group
      machine.succeed('su member -c "${pkg}/bin/redis-cli ping | grep PONG"')
      machine.succeed('su member-test -c "${pkg}/bin/redis-cli ping | grep PONG"')

      machine.succeed("${pkg}/bin/redis-cli ping | grep PONG")
      machine.succeed("${pkg}/bin/redis-cli -s ${redis.servers[""]!.unixSocket} ping | grep PONG")
      machine.succeed("${pkg}/bin/redis-cli -s ${redis.servers["test"]!.unixSocket} ping | grep PONG")
    `;
  },
});
