// nixpkgs nixos/tests/memcached.nix, its Python test script verbatim (SPEC §11): the Nix
// interpolation \${testScript} is a TypeScript one here, naming the same client program.
// Adapted, the nodes only: Debian's memcached package instead of services.memcached, and
// the client (a Nix-built Python program with python-memcached in NixOS) is the same five
// lines run by Debian's python3 with python3-memcache. `machine` is a VM.
import { defineTest } from "vmrig";

const testScript = "python3 /etc/test_memcache.py";

export default defineTest({
  name: "nixos-memcached",
  nodes: {
    machine: {
      environment: {
        systemPackages: ["memcached", "python3-memcache"],
        etc: {
          "test_memcache.py": {
            text: [
              "import memcache",
              "c = memcache.Client(['localhost:11211'])",
              "c.set('key', 'value')",
              "assert 'value' == c.get('key')",
              "",
            ].join("\n"),
          },
        },
      },
    },
  },
  testScript: `
    machine.start()
    machine.wait_for_unit("memcached.service")
    machine.wait_for_open_port(11211)
    machine.succeed("${testScript}")
  `,
});
