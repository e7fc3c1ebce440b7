// The seeds' minimal test: alice has firefox and tree on her PATH; root does not.
// Debian ships Firefox as `firefox-esr`.
import { defineTest } from "vmrig";

export default defineTest({
  name: "minimal",
  nodes: {
    machine: {
      users: {
        users: {
          alice: {
            isNormalUser: true,
            extraGroups: ["wheel"],
            packages: ["firefox-esr", "tree"],
          },
        },
      },
      system: { stateVersion: "22.11" },
    },
  },
  async testScript({ machine }) {
    await machine.waitForUnit("default.target");
    await machine.succeed("su -- alice -c 'which firefox-esr'");
    await machine.fail("su -- root -c 'which firefox-esr'");
  },
});
