import { describe, expect, it } from "vitest";
import { evalNodes, lib } from "../../src/config/eval.js";
import { errorOf } from "./fixtures.js";

describe("specialisations (NixOS's specialisation.<name>)", () => {
  it("evaluates each as the node's config plus its module, with its own toplevel", () => {
    const c = evalNodes({
      web: {
        services: { nginx: { enable: true } },
        networking: { firewall: { allowedTCPPorts: [80] } },
        specialisation: {
          closed: { configuration: { networking: { firewall: { allowedTCPPorts: lib.mkForce([]) } } } },
          bare: { inheritParentConfig: false, configuration: { environment: { systemPackages: ["curl"] } } },
        },
      },
    });
    const web = c.web!;
    expect(web.system.build.toplevel).toBe("/usr/lib/vmrig/system");
    expect(Object.keys(web.specialisation)).toEqual(["bare", "closed"]);
    const closed = web.specialisation.closed!.configuration;
    expect(closed.services.nginx.enable).toBe(true); // inherited
    expect(closed.networking.firewall.allowedTCPPorts).toEqual([]);
    expect(closed.system.build.toplevel).toBe("/usr/lib/vmrig/system/specialisation/closed");
    const bare = web.specialisation.bare!.configuration;
    expect(bare.services.nginx.enable).toBe(false); // not inherited
    expect(bare.environment.systemPackages).toEqual(["curl"]);
    // the node's own vmrig defaults still apply (hostname, addresses)
    expect(bare.networking.hostName).toBe("web");
  });

  it("lets function modules inside a specialisation read the other nodes", () => {
    const c = evalNodes({
      server: { networking: { firewall: { allowedTCPPorts: [8080] } } },
      client: {
        specialisation: {
          probe: {
            configuration: ({ nodes }) => ({
              environment: { variables: { PORT: String(nodes.server!.networking.firewall.allowedTCPPorts[0]) } },
            }),
          },
        },
      },
    });
    expect(c.client!.specialisation.probe!.configuration.environment.variables.PORT).toBe("8080");
    expect(c.client!.environment.variables.PORT).toBeUndefined();
  });

  it("reports an unknown option inside one with its full path, before anything is built", () => {
    const e = errorOf(() =>
      evalNodes({
        web: { specialisation: { spicy: { configuration: { services: { ngnix: { enable: true } } } as never } } },
      }),
    );
    expect(e.message).toContain("unknown option `nodes.web.specialisation.spicy.configuration.services.ngnix`");
    expect(e.hint).toContain("nodes.web.specialisation.spicy.configuration.services.nginx");
    const typo = errorOf(() => evalNodes({ web: { specialisation: { spicy: { configuraton: {} } as never } } }));
    expect(typo.message).toContain("unknown option `nodes.web.specialisation.spicy.configuraton`");
    expect(typo.hint).toContain("configuration");
  });

  it("refuses nested specialisations and names that cannot be folders", () => {
    const nested = errorOf(() =>
      evalNodes({ a: { specialisation: { x: { configuration: { specialisation: { y: { configuration: {} } } } } } } }),
    );
    expect(nested.message).toContain("does not nest");
    expect(errorOf(() => evalNodes({ a: { specialisation: { "a/b": { configuration: {} } } } })).message).toContain(
      "folder name",
    );
  });
});
