// Specialisations (SPEC §2): a node with an alternative configuration, switched to while it
// runs with NixOS's `switch-to-configuration`. Only what changed is touched: a changed unit
// is restarted, one with reloadIfChanged is reloaded, one with restartIfChanged = false is
// left running, an unchanged one keeps its process, and a service that only the
// specialisation enables starts (and stops again on the way back).
import { defineTest, lib, type NodeModule } from "vmrig";

/** A long-running service whose unit changes with `greeting`. */
const sleeper = (greeting: string) => ({
  wantedBy: ["multi-user.target"],
  environment: { GREETING: greeting },
  script: "exec sleep infinity",
});

const machine: NodeModule = {
  systemd: {
    services: {
      changed: sleeper("hello"),
      unchanged: sleeper("same"),
      reloaded: { ...sleeper("hello"), reloadIfChanged: true, reload: "echo reloaded >> /tmp/reloaded" },
      pinned: { ...sleeper("hello"), restartIfChanged: false },
    },
  },
  specialisation: {
    spicy: {
      configuration: {
        systemd: {
          services: {
            changed: { environment: { GREETING: lib.mkForce("spicy") } },
            reloaded: { environment: { GREETING: lib.mkForce("spicy") } },
            pinned: { environment: { GREETING: lib.mkForce("spicy") } },
          },
        },
        services: { nginx: { enable: true } },
        environment: { etc: { "spicy.txt": { text: "hot\n" } } },
      },
    },
  },
};

export default defineTest({
  name: "specialisation",
  nodes: { machine },
  async testScript({ machine, nodes }) {
    await machine.waitForUnit("multi-user.target");
    const pid = async (unit: string) => (await machine.succeed(`systemctl show -p MainPID --value ${unit}`)).trim();
    const before = Object.fromEntries(
      await Promise.all(["changed", "unchanged", "reloaded", "pinned"].map(async (u) => [u, await pid(u)] as const)),
    );
    await machine.fail("systemctl is-active nginx");

    const toplevel = nodes.machine.config.system.build.toplevel;
    const out = await machine.succeed(`${toplevel}/specialisation/spicy/bin/switch-to-configuration test 2>&1`);
    machine.log(out);
    // NixOS's report of what it did
    expect(out, /stopping the following units: changed\.service\n/);
    expect(out, /reloading the following units: reloaded\.service\n/);
    expect(out, /NOT restarting the following changed units: pinned\.service\n/);
    expect(out, /starting the following units: changed\.service, nginx\.service\n/);

    if ((await pid("changed")) === before.changed) throw new Error("changed.service was not restarted");
    for (const u of ["unchanged", "reloaded", "pinned"])
      if ((await pid(u)) !== before[u]) throw new Error(`${u}.service was restarted`);
    await machine.succeed("grep -qx reloaded /tmp/reloaded");
    await machine.succeed(
      "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value changed)/environ | grep -qx GREETING=spicy",
    );
    await machine.waitForUnit("nginx.service");
    await machine.succeed("grep -qx hot /etc/spicy.txt");
    // NixOS's names: the configuration booted, and the one running now
    await machine.succeed(`[ "$(readlink /run/booted-system)" = ${toplevel} ]`);
    await machine.succeed(`[ "$(readlink /run/current-system)" = ${toplevel}/specialisation/spicy ]`);

    // and back: nginx stops, the specialisation's file goes, `changed` runs as before
    const back = await machine.succeed(`${toplevel}/bin/switch-to-configuration switch 2>&1`);
    machine.log(back);
    expect(back, /stopping the following units: changed\.service, nginx\.service\n/);
    await machine.fail("systemctl is-active nginx");
    await machine.fail("test -e /etc/spicy.txt");
    await machine.succeed(
      "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value changed)/environ | grep -qx GREETING=hello",
    );

    // a specialisation that does not exist: the report says which ones do
    const missing = await machine.succeed(`${toplevel}/specialisation/mild/bin/switch-to-configuration test`).then(
      () => undefined,
      (e: unknown) => String(e),
    );
    if (!missing?.includes('machine has no specialisation "mild"; its specialisations: spicy'))
      throw new Error(`switching to a missing specialisation: ${missing ?? "it succeeded"}`);
  },
});

function expect(text: string, re: RegExp): void {
  if (!re.test(text)) throw new Error(`switch-to-configuration did not print ${re}:\n${text}`);
}
