import { describe, expect, it } from "vitest";
import { evalNodes, lib, defineModule, type NodeModule } from "../../src/config/eval.js";
import { errorOf } from "./fixtures.js";

describe("module evaluation", () => {
  it("fills defaults and gives each node its hostname and vlan addresses", () => {
    const c = evalNodes({ b: {}, a: { virtualisation: { vlans: [1, 2] } } });
    expect(c.a!.networking.hostName).toBe("a");
    expect(c.a!.networking.interfaces.eth1!.ipv4.addresses).toEqual([{ address: "192.168.1.1", prefixLength: 24 }]);
    expect(c.a!.networking.interfaces.eth2!.ipv6.addresses).toEqual([{ address: "2001:db8:2::1", prefixLength: 64 }]);
    expect(c.b!.networking.interfaces.eth1!.ipv4.addresses[0]!.address).toBe("192.168.1.2");
    expect(c.b!.virtualisation.memorySize).toBe(1024);
    expect(c.b!.networking.firewall.enable).toBe(true);
  });

  it("lets a module read another node as NixOS does: nodes.x.option and nodes.x.config.option alike", () => {
    const configs = evalNodes({
      server: { networking: { firewall: { allowedTCPPorts: [8080] } } },
      client: ({ nodes }) => ({
        environment: {
          variables: {
            DIRECT: String(nodes.server!.networking.firewall.allowedTCPPorts[0]),
            VIA_CONFIG: String(nodes.server!.config.networking.firewall.allowedTCPPorts[0]),
          },
        },
      }),
    });
    expect(configs.client!.environment.variables).toMatchObject({ DIRECT: "8080", VIA_CONFIG: "8080" });
  });

  it("concatenates lists and merges attribute sets across imports and defaults", () => {
    const shared: NodeModule = {
      environment: { systemPackages: ["curl"] },
      users: { users: { bob: { isNormalUser: true } } },
    };
    const c = evalNodes(
      {
        m: { imports: [shared], environment: { systemPackages: ["tree"] }, users: { users: { alice: { uid: 1234 } } } },
      },
      { environment: { systemPackages: ["less"] } },
    );
    expect(c.m!.environment.systemPackages.sort()).toEqual(["curl", "less", "tree"]);
    expect(Object.keys(c.m!.users.users).sort()).toEqual(["alice", "bob"]);
    expect(c.m!.users.users.alice!.uid).toBe(1234);
  });

  it("rejects two different scalar values, naming both definitions", () => {
    const e = errorOf(() =>
      evalNodes({ m: { imports: [{ virtualisation: { memorySize: 512 } }], virtualisation: { memorySize: 2048 } } }),
    );
    expect(e.kind).toBe("config");
    expect(e.message).toContain("nodes.m.virtualisation.memorySize");
    expect(e.message).toContain("512");
    expect(e.message).toContain("2048");
    expect(e.message).toContain("nodes.m.imports[0]");
    expect(e.message).toContain("mkForce");
  });

  it("lets mkForce win and mkDefault yield", () => {
    const c = evalNodes({
      m: {
        imports: [
          { virtualisation: { memorySize: lib.mkForce(512) } },
          { networking: { hostName: lib.mkDefault("fallback") } },
        ],
        virtualisation: { memorySize: 2048 },
        networking: { hostName: "chosen" },
      },
    });
    expect(c.m!.virtualisation.memorySize).toBe(512);
    expect(c.m!.networking.hostName).toBe("chosen");
  });

  it("orders list elements by mkOrder, mkBefore and mkAfter, across modules and under mkForce", () => {
    const c = evalNodes({
      m: {
        imports: [
          { environment: { systemPackages: lib.mkAfter(["last"]) } },
          { environment: { systemPackages: ["plain1"] } },
          { environment: { systemPackages: lib.mkBefore(["first"]) } },
        ],
        environment: { systemPackages: ["plain2"] },
        virtualisation: { vlans: [1, 2] },
        // nixpkgs nat.nix: a second address after the one vmrig assigns, whatever the module order
        networking: {
          interfaces: {
            eth2: { ipv4: { addresses: lib.mkOrder(10000, [{ address: "192.168.2.234", prefixLength: 24 }]) } },
          },
        },
      },
      n: {
        environment: { systemPackages: lib.mkForce(lib.mkOrder(10, ["forced"])) },
        imports: [{ environment: { systemPackages: ["lost"] } }],
      },
    });
    const pkgs = c.m!.environment.systemPackages.filter((p) =>
      ["first", "plain1", "plain2", "last"].includes(p as string),
    );
    expect(pkgs).toEqual(["first", "plain1", "plain2", "last"]);
    expect(c.m!.networking.interfaces.eth2!.ipv4.addresses.map((a) => a.address)).toEqual([
      "192.168.2.1",
      "192.168.2.234",
    ]);
    expect(c.n!.environment.systemPackages).toContain("forced");
    expect(c.n!.environment.systemPackages).not.toContain("lost");
  });

  it("reports an unknown option with its full path and a suggestion", () => {
    const e = errorOf(() => evalNodes({ server: { services: { ngnix: { enable: true } } } as never }));
    expect(e.kind).toBe("config");
    expect(e.message).toContain("unknown option `nodes.server.services.ngnix`");
    expect(e.message).toContain("did you mean `nodes.server.services.nginx`?");
  });

  it("suggests the right place for a misplaced option", () => {
    const e = errorOf(() => evalNodes({ m: { allowedTCPPorts: [80] } as never }));
    expect(e.message).toContain("networking.firewall.allowedTCPPorts");
  });

  it("reports a wrong type with what was expected", () => {
    const e = errorOf(() => evalNodes({ m: { networking: { firewall: { allowedTCPPorts: ["80"] } } } as never }));
    expect(e.message).toMatch(/expects integer/);
    expect(e.message).toContain("nodes.m.networking.firewall.allowedTCPPorts[0]");
  });

  it("merges free-form settings: declared keys keep their defaults and types, other keys take the free-form type", () => {
    const c = evalNodes({
      m: {
        imports: [{ services: { postgresql: { settings: { max_connections: 10 } } } }],
        services: { postgresql: { settings: { shared_buffers: "64MB", max_connections: lib.mkForce(20) } } },
      },
    });
    expect(c.m!.services.postgresql.settings).toEqual({ port: 5432, max_connections: 20, shared_buffers: "64MB" });
    const conflict = errorOf(() =>
      evalNodes({
        m: {
          imports: [{ services: { postgresql: { settings: { a: 1 } } } }],
          services: { postgresql: { settings: { a: 2 } } },
        },
      }),
    );
    expect(conflict.message).toContain("conflicting definitions for `nodes.m.services.postgresql.settings.a`");
    const wrong = errorOf(() =>
      evalNodes({ m: { services: { postgresql: { settings: { port: "5432" } } } } as never }),
    );
    expect(wrong.message).toContain("`nodes.m.services.postgresql.settings.port` expects integer");
    const wrongFree = errorOf(() => evalNodes({ m: { services: { postgresql: { settings: { x: [1] } } } } as never }));
    expect(wrongFree.message).toContain(
      "`nodes.m.services.postgresql.settings.x` expects string or integer or boolean",
    );
  });

  it("gives function modules the final config of their own and of other nodes", () => {
    const server = defineModule(({ config }) => ({
      networking: { firewall: { allowedTCPPorts: [config.virtualisation.memorySize === 2048 ? 443 : 80] } },
    }));
    const c = evalNodes({
      server: { imports: [server], virtualisation: { memorySize: 2048 } },
      client: ({ nodes }) => ({
        environment: {
          etc: { "server-ports": { text: String(nodes.server!.config.networking.firewall.allowedTCPPorts) } },
        },
      }),
    });
    expect(c.server!.networking.firewall.allowedTCPPorts).toEqual([443]);
    expect(c.client!.environment.etc["server-ports"]!.text).toBe("443");
  });
});

describe("modules reading other nodes", () => {
  it("may read values that only exist after a first round, as Nix's laziness allows", () => {
    const c = evalNodes({
      client: ({ nodes }) => ({
        networking: { defaultGateway: nodes.router!.config.networking.interfaces.eth1!.ipv4.addresses[0]!.address },
      }),
      router: { virtualisation: { vlans: [1, 2] } },
    });
    expect(c.client!.networking.defaultGateway).toBe("192.168.1.2");
  });

  it("lets a module read a value that its own definitions bring into being (pools.web.socket)", () => {
    const c = evalNodes({
      m: ({ config }) => ({
        services: {
          phpfpm: { pools: { web: {} } },
          nginx: {
            virtualHosts: {
              x: {
                locations: { "/": { extraConfig: `fastcgi_pass unix:${config.services.phpfpm.pools.web!.socket};` } },
              },
            },
          },
        },
      }),
    });
    expect(c.m!.services.nginx.virtualHosts.x!.locations["/"]!.extraConfig).toBe(
      "fastcgi_pass unix:/run/phpfpm/web.sock;",
    );
    const e = errorOf(() =>
      evalNodes({
        m: ({ config }) => ({
          networking: { firewall: { allowedTCPPorts: [config.services.phpfpm.pools.web?.settings["port"] as number] } },
        }),
      }),
    );
    expect(e.message).toContain(
      "allowedTCPPorts[0]` expects integer, but nodes.m sets undefined (a read of an option or attribute that does not exist?)",
    );
  });

  it("reports a module that keeps throwing, naming it", () => {
    const e = errorOf(() =>
      evalNodes({
        m: () => {
          throw new Error("broken module");
        },
      }),
    );
    expect(e.message).toContain("nodes.m: the module threw: broken module");
  });
});

describe("containers (SPEC §9)", () => {
  it("share the address scheme and name space with the nodes", () => {
    const c = evalNodes({ vm: {}, ct: {} }, undefined, new Set(["ct"]));
    expect(c.ct!.networking.interfaces.eth1!.ipv4.addresses[0]!.address).toBe("192.168.1.1");
    expect(c.vm!.networking.interfaces.eth1!.ipv4.addresses[0]!.address).toBe("192.168.1.2");
  });

  it("reject an option only a VM has, naming the container's module and why", () => {
    const e = errorOf(() =>
      evalNodes(
        { ct: { imports: [{ virtualisation: { memorySize: lib.mkForce(4096) } }] } },
        undefined,
        new Set(["ct"]),
      ),
    );
    expect(e.message).toContain("containers.ct.imports[0] sets virtualisation.memorySize");
    expect(e.message).toContain("shares the host's memory");
    expect(e.hint).toContain("`nodes`");
    expect(
      errorOf(() => evalNodes({ ct: { boot: { kernelParams: ["quiet"] } } }, undefined, new Set(["ct"]))).message,
    ).toContain("host's kernel");
  });

  it("take the test's defaults where they apply: a VM-only default is for the nodes", () => {
    const c = evalNodes({ vm: {}, ct: {} }, { virtualisation: { memorySize: 2048 } }, new Set(["ct"]));
    expect(c.vm!.virtualisation.memorySize).toBe(2048);
  });

  it("a VM's module may set them", () => {
    expect(evalNodes({ vm: { virtualisation: { memorySize: 2048 } } }).vm!.virtualisation.memorySize).toBe(2048);
  });
});
