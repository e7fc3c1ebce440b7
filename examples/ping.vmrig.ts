// The seeds' first example: two machines on one network ping each other.
import { defineTest } from "vmrig";

export default defineTest({
  name: "ping",
  nodes: {
    machine1: {},
    machine2: {},
  },
  async testScript({ machine1, machine2, startAll }) {
    await startAll();
    await machine1.waitForUnit("network-online.target");
    await machine2.waitForUnit("network-online.target");
    await machine1.succeed("ping -c 1 machine2");
    await machine2.succeed("ping -c 1 machine1");
  },
});
