import { describe, expect, it } from "vitest";
import { evalNodes, lib } from "../../src/config/eval.js";
import { renderNode, packagesOf, MASKED_GENERATORS } from "../../src/image/render.js";
import { VmrigError } from "../../src/util/errors.js";
import { errorOf, fileOf, render, text, tree } from "./fixtures.js";

describe("rendering a node", () => {
  it("sets hostname, /etc/hosts and the static network", () => {
    const p = render({
      networking: { hostName: "web", extraHosts: "10.9.9.9 extra", defaultGateway: "192.168.1.254" },
    });
    expect(text(p, "/etc/hostname")).toBe("web\n");
    const hosts = text(p, "/etc/hosts");
    expect(hosts).toContain("192.168.1.1 m\n2001:db8:1::1 m");
    expect(hosts).toContain("127.0.1.1 web");
    expect(hosts).toContain("10.9.9.9 extra");
    const net = text(p, "/etc/vmrig/network-up");
    expect(net).toContain("ip addr replace 192.168.1.1/24 dev eth1");
    expect(net).toContain("ip -6 addr replace 2001:db8:1::1/64 dev eth1 nodad");
    expect(net).toContain("ip route replace default via 192.168.1.254");
  });

  it("masks slow units and every useless generator", () => {
    const p = render({});
    expect(p.symlinks).toContainEqual({ path: "/etc/systemd/system/apt-daily.timer", target: "/dev/null" });
    for (const g of MASKED_GENERATORS)
      expect(p.symlinks).toContainEqual({ path: `/etc/systemd/system-generators/${g}`, target: "/dev/null" });
    expect(text(p, "/etc/systemd/journald.conf.d/vmrig.conf")).toContain("Storage=volatile");
  });

  it("renders the firewall: default drop, ping, open ports", () => {
    const fw = text(
      render({ networking: { firewall: { allowedTCPPorts: [443, 80, 80], allowedUDPPorts: [53] } } }),
      "/etc/nftables.conf",
    );
    expect(fw).toContain("policy drop;");
    expect(fw).toContain("tcp dport { 80, 443 } accept");
    expect(fw).toContain("udp dport { 53 } accept");
    expect(fw).toContain("icmp type echo-request accept");
    const noPing = text(render({ networking: { firewall: { allowPing: false } } }), "/etc/nftables.conf");
    expect(noPing).not.toContain("echo-request");
    const off = text(render({ networking: { firewall: { enable: false } } }), "/etc/nftables.conf");
    // nothing but the removal of a table a reload from an older configuration may have left
    expect(off).not.toContain("chain input");
    expect(off).toContain("delete table inet vmrig-firewall");
  });

  it("names nftables.service as NixOS names its units: firewall.service and, with NAT, nat.service", () => {
    const alias = (name: string) => ({
      path: `/etc/systemd/system/${name}.service`,
      target: "/usr/lib/systemd/system/nftables.service",
    });
    const plain = render({});
    expect(plain.symlinks).toContainEqual(alias("firewall"));
    expect(plain.symlinks).not.toContainEqual(alias("nat"));
    const nat = render({
      virtualisation: { vlans: [1, 2] },
      networking: { nat: { enable: true, internalInterfaces: ["eth1"], externalInterface: "eth2" } },
    });
    expect(nat.symlinks).toContainEqual(alias("nat"));
    // with the firewall off, nat.service is a unit of its own
    const natOnly = render({
      virtualisation: { vlans: [1, 2] },
      networking: { firewall: { enable: false }, nat: { enable: true, externalInterface: "eth2" } },
    });
    expect(natOnly.symlinks).not.toContainEqual(alias("nat"));
    expect(fileOf(natOnly, "/etc/systemd/system/nat.service")).toBeDefined();
    expect(render({ networking: { firewall: { enable: false } } }).symlinks).not.toContainEqual(alias("firewall"));
    // a unit of the user's own by that name wins
    const own = render({ systemd: { services: { firewall: { script: "true" } } } });
    expect(own.symlinks).not.toContainEqual(alias("firewall"));
  });

  it("renders services.nfs.server: the exports, the server package, the exported directories made first", () => {
    const config = {
      services: {
        nfs: {
          server: {
            enable: true,
            exports: "# comment\n/data 192.168.1.0/24(rw,fsid=0)\n/srv/b host(ro)\n",
            createMountPoints: true,
          },
        },
      },
    };
    const p = render(config);
    expect(text(p, "/etc/exports")).toContain("/data 192.168.1.0/24(rw,fsid=0)");
    expect(text(p, "/etc/systemd/system/nfs-server.service.d/vmrig-mount-points.conf")).toContain(
      "ExecStartPre=/bin/mkdir -p /data /srv/b",
    );
    expect(packagesOf(evalNodes({ m: config }).m!)).toContain("nfs-kernel-server");
  });

  it("renders services.openarena as NixOS's openarena.service, Debian's own unit masked, the port opened", () => {
    const config = {
      services: {
        openarena: { enable: true, openPorts: true, extraFlags: ["+map oa_dm7", "+set sv_hostname 'My server'"] },
      },
    };
    const p = render(config);
    expect(text(p, "/etc/systemd/system/openarena.service")).toContain(
      "ExecStart=/usr/games/openarena-server +set fs_homepath /var/lib/openarena +map oa_dm7 +set sv_hostname 'My server'",
    );
    expect(p.symlinks).toContainEqual({ path: "/etc/systemd/system/openarena-server.service", target: "/dev/null" });
    const node = evalNodes({ m: config }).m!;
    expect(packagesOf(node)).toContain("openarena-server");
    expect(node.networking.firewall.allowedUDPPorts).toEqual([27960]);
  });

  it("renders services.nfs.settings as nfs.conf(5) sections", () => {
    const p = render({
      services: { nfs: { settings: { nfsd: { "grace-time": 10, vers3: false }, mountd: { port: "4002" } } } },
    });
    expect(text(p, "/etc/nfs.conf.d/vmrig.conf")).toContain(
      "[nfsd]\ngrace-time = 10\nvers3 = false\n\n[mountd]\nport = 4002\n",
    );
  });

  it("renders users.users.NAME.hashedPasswordFile, security.pam.services.NAME.limits and services.openssh's listen addresses", () => {
    const p = render({
      users: { users: { alice: { isNormalUser: true, hashedPasswordFile: "hash.txt" } } },
      security: {
        pam: {
          services: {
            su: {
              limits: [
                { domain: "alice", type: "hard", item: "nofile", value: 4242 },
                { domain: "*", type: "-", item: "core", value: "unlimited" },
              ],
            },
          },
        },
      },
      services: {
        openssh: {
          enable: true,
          ports: [22, 2222],
          listenAddresses: [{ addr: "192.168.1.1" }, { addr: "::1", port: 22 }],
          extraConfig: "MaxAuthTries 3\n",
        },
      },
    });
    // the fixture tree's readSource gives "contents of PATH": its first line is the hash
    expect(text(p, "/etc/shadow")).toContain("alice:contents of hash.txt:");
    expect(text(p, "/etc/security/limits-su.conf")).toContain("alice hard nofile 4242\n* - core unlimited");
    expect(text(p, "/etc/pam.d/su")).toBe(
      "@include common-auth\n@include common-session\n# vmrig: security.pam.services.su.limits\nsession required pam_limits.so conf=/etc/security/limits-su.conf\n",
    );
    const sshd = text(p, "/etc/ssh/sshd_config.d/90-vmrig.conf");
    expect(sshd).toContain("ListenAddress 192.168.1.1:22\nListenAddress 192.168.1.1:2222\nListenAddress [::1]:22");
    expect(sshd).toMatch(/MaxAuthTries 3\n$/);
    const e = errorOf(() =>
      render({ security: { pam: { services: { nosuch: { limits: [{ item: "nofile", value: 1 }] } } } } }),
    );
    expect(e.message).toContain("the image has no PAM service nosuch");
    expect(e.hint).toContain("login, sshd, su");
  });

  it("renders services.redis.servers as NixOS runs them: a unit, account and socket per server", () => {
    const config = {
      services: { redis: { servers: { "": { enable: true }, test: { enable: true, requirePass: "pw" } } } },
    };
    const configs = evalNodes({ m: config });
    const servers = configs.m!.services.redis.servers;
    expect(servers[""]).toMatchObject({ port: 6379, unixSocket: "/run/redis/redis.sock", user: "redis" });
    expect(servers.test).toMatchObject({ port: 0, unixSocket: "/run/redis-test/redis.sock", user: "redis-test" });
    expect(configs.m!.users.users["redis-test"]).toMatchObject({ isSystemUser: true, group: "redis-test" });
    const p = render(config);
    expect(text(p, "/etc/systemd/system/redis.service")).toContain(
      "ExecStart=/usr/bin/redis-server /etc/vmrig/redis/redis.conf",
    );
    const conf = text(p, "/etc/vmrig/redis/redis-test.conf");
    expect(conf).toContain("port 0\nunixsocket /run/redis-test/redis.sock\nunixsocketperm 660");
    expect(conf).toContain("requirepass pw");
    expect(fileOf(p, "/etc/vmrig/redis/redis-test.conf").group).toBe("redis-test");
    expect(p.symlinks).toContainEqual({ path: "/etc/systemd/system/redis-server.service", target: "/dev/null" });
    expect(packagesOf(configs.m!)).toContain("redis-server");
  });

  it("mounts a network file system under remote-fs.target once the network is up, with its client installed", () => {
    const config = {
      fileSystems: {
        "/data": { device: "server:/", fsType: "nfs4" },
        "/scratch": { device: "tmpfs", fsType: "tmpfs" },
      },
    };
    const p = render(config);
    const mount = text(p, "/etc/systemd/system/data.mount");
    expect(mount).toContain("Wants=network-online.target");
    expect(mount).toContain("After=network-online.target remote-fs-pre.target");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/remote-fs.target.wants/data.mount",
      target: "/etc/systemd/system/data.mount",
    });
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/local-fs.target.wants/scratch.mount",
      target: "/etc/systemd/system/scratch.mount",
    });
    expect(text(p, "/etc/systemd/system/scratch.mount")).not.toContain("network-online");
    expect(packagesOf(evalNodes({ m: config }).m!)).toContain("nfs-common");
  });

  it("renders systemd.user.services: new user units enabled for every user, drop-ins over packaged ones (templates too)", () => {
    const p = render({
      systemd: {
        user: {
          services: {
            hello: {
              script: "echo hi > /tmp/hello-$USER",
              wantedBy: ["default.target"],
              serviceConfig: { Type: "oneshot" },
            },
            // seed 004: gnome-shell in unsafe mode
            "org.gnome.Shell@wayland": { serviceConfig: { ExecStart: ["", "/usr/bin/gnome-shell --unsafe-mode"] } },
          },
        },
      },
    });
    expect(text(p, "/etc/systemd/user/hello.service")).toContain("ExecStart=/etc/vmrig/units/user-hello-start");
    expect(text(p, "/etc/vmrig/units/user-hello-start")).toContain("echo hi > /tmp/hello-$USER");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/user/default.target.wants/hello.service",
      target: "/etc/systemd/user/hello.service",
    });
    expect(text(p, "/etc/systemd/user/org.gnome.Shell@wayland.service.d/vmrig.conf")).toContain(
      "ExecStart=\nExecStart=/usr/bin/gnome-shell --unsafe-mode",
    );
    // a second ExecStart over the shipped one is caught before boot, naming the user option
    expect(() =>
      render({
        systemd: { user: { services: { "org.gnome.Shell@wayland": { serviceConfig: { ExecStart: "/bin/true" } } } } },
      }),
    ).toThrow(/systemd\.user\.services\.org\.gnome\.Shell@wayland\.serviceConfig\.ExecStart/);
  });

  it("renders NAT as NixOS's iptables chains, hooked into the firewall's unit, removed on every reload and stop", () => {
    const p = render({
      virtualisation: { vlans: [1, 2] },
      networking: { nat: { enable: true, internalInterfaces: ["eth1"], externalInterface: "eth2" } },
    });
    const start = text(p, "/etc/vmrig/nat-start");
    expect(start).toContain("iptables -w -t nat -A nixos-nat-pre -i eth1 -j MARK --set-mark 1");
    expect(start).toContain("iptables -w -t nat -A nixos-nat-post -m mark --mark 1 -o eth2 -j MASQUERADE");
    expect(start).toContain("iptables -w -A nixos-filter-forward -i eth1 -o eth2 -j ACCEPT");
    // hooked in after the chains are complete
    expect(start.indexOf("-A FORWARD -j nixos-filter-forward")).toBeGreaterThan(start.indexOf("-i eth1 -o eth2"));
    expect(text(p, "/etc/vmrig/nat-stop")).toContain("iptables -w -X nixos-filter-forward");
    const dropIn = text(p, "/etc/systemd/system/nftables.service.d/vmrig.conf");
    expect(dropIn).toContain("ExecStartPost=/etc/vmrig/nat-start");
    expect(dropIn).toMatch(
      /ExecReload=\nExecReload=\/usr\/sbin\/nft -f \/etc\/nftables.conf\nExecReload=\/etc\/vmrig\/nat-stop\nExecReload=\/etc\/vmrig\/nat-start/,
    );
    expect(dropIn).toContain("ExecStop=-/etc/vmrig/nat-stop");
    // the firewall's reload replaces vmrig's table, never the whole ruleset (iptables' FORWARD policy stays)
    const fw = text(p, "/etc/nftables.conf");
    expect(fw).not.toContain("flush ruleset");
    expect(fw).toContain("delete table inet vmrig-firewall");
    expect(fw).not.toContain("chain forward");
    expect(text(p, "/etc/vmrig/network-up")).toContain("echo 1 > /proc/sys/net/ipv4/ip_forward");
    expect(
      packagesOf(evalNodes({ m: { networking: { nat: { enable: true, externalInterface: "eth1" } } } }).m!),
    ).toContain("iptables");
    expect(() => render({ networking: { nat: { enable: true } } })).toThrow(/externalInterface/);
  });

  it("renders NAT's externalIP, port forwards with reflection for the inside only, and nat.service without a firewall", () => {
    const p = render({
      virtualisation: { vlans: [1, 2] },
      networking: {
        firewall: { enable: false },
        nat: {
          enable: true,
          internalIPs: ["192.168.1.0/24"],
          externalInterface: "eth2",
          externalIP: "192.168.2.1",
          forwardPorts: [{ sourcePort: 8080, destination: "192.168.1.2:80", loopbackIPs: ["192.168.2.1"] }],
        },
      },
    });
    const start = text(p, "/etc/vmrig/nat-start");
    expect(start).toContain("-A nixos-nat-post -s 192.168.1.0/24 -o eth2 -j SNAT --to-source 192.168.2.1");
    // only connections to the external address are forwarded
    expect(start).toContain(
      "-A nixos-nat-pre -i eth2 -d 192.168.2.1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.2:80",
    );
    expect(start).toContain("-A nixos-nat-out -d 192.168.2.1 -p tcp --dport 8080 -j DNAT");
    // reflection translates connections from inside, not from outside (NixOS #277016)
    expect(start).toContain(
      "-A nixos-nat-post -s 192.168.1.0/24 -d 192.168.1.2 -p tcp --dport 80 -j SNAT --to-source 192.168.2.1",
    );
    expect(start).toContain(
      "-A nixos-filter-forward -d 192.168.1.2 -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT",
    );
    const natUnit = text(p, "/etc/systemd/system/nat.service");
    expect(natUnit).toContain("ExecStart=/etc/vmrig/nat-start");
    expect(natUnit).toContain("ExecStop=/etc/vmrig/nat-stop");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/sysinit.target.wants/nat.service",
      target: "/etc/systemd/system/nat.service",
    });
    expect(text(p, "/etc/systemd/system/nftables.service.d/vmrig.conf")).not.toContain("nat-");
    expect(() =>
      render({
        virtualisation: { vlans: [1] },
        networking: {
          nat: { enable: true, externalInterface: "eth1", forwardPorts: [{ sourcePort: 1, destination: "x" }] },
        },
      }),
    ).toThrow(/forwardPorts\[0\]\.destination/);
  });

  it("renders firewall.filterForward: a forward chain that drops all but replies, port forwards and NAT's way out", () => {
    const p = render({
      virtualisation: { vlans: [1, 2] },
      networking: {
        firewall: { filterForward: true },
        nat: { enable: true, internalInterfaces: ["eth1"], externalInterface: "eth2" },
      },
    });
    const fw = text(p, "/etc/nftables.conf");
    expect(fw).toMatch(/chain forward \{\s+type filter hook forward priority filter; policy drop;/);
    expect(fw).toContain('iifname { "eth1" } oifname "eth2" accept');
    expect(fw).toContain("ct status dnat accept");
  });

  it("renders lib.writeScriptBin packages onto the PATH and services.vsftpd", () => {
    const p = render({
      environment: { systemPackages: ["curl", lib.writeScriptBin("hello", "#!/bin/sh\necho hi\n")] },
      services: {
        vsftpd: { enable: true, anonymousUser: true, localRoot: "/etc/", extraConfig: "pasv_min_port=51000\n" },
      },
    });
    expect(fileOf(p, "/usr/local/bin/hello")).toMatchObject({ content: "#!/bin/sh\necho hi\n", mode: 0o755 });
    const conf = text(p, "/etc/vsftpd.conf");
    expect(conf).toContain("anonymous_enable=YES");
    expect(conf).toContain("anon_root=/home/ftp");
    expect(conf).toContain("local_root=/etc/");
    expect(conf).toContain("pasv_min_port=51000");
    expect(p.dirs).toContainEqual({ path: "/home/ftp", mode: 0o555, owner: "root", group: "root" });
    const pkgs = packagesOf(
      evalNodes({
        m: {
          environment: { systemPackages: ["curl", lib.writeScriptBin("x", "")] },
          services: { vsftpd: { enable: true } },
        },
      }).m!,
    );
    expect(pkgs).toEqual(expect.arrayContaining(["curl", "vsftpd"]));
    expect(pkgs).not.toContain("x");
    expect(() => lib.writeScriptBin("a b", "")).toThrow(/not a command name/);
  });

  it("renders nginx listen lists, server aliases, index and extra directives", () => {
    const p = render({
      services: {
        nginx: {
          enable: true,
          virtualHosts: {
            a: {
              root: "/etc",
              locations: { "/": { index: "hostname" } },
              listen: [
                { addr: "0.0.0.0", port: 8080 },
                { addr: "10.0.0.1", port: 8080 },
              ],
            },
            b: { serverAliases: ["c"], extraConfig: "add_header X-B 1;" },
          },
        },
      },
    });
    const conf = text(p, "/etc/nginx/sites-enabled/vmrig.conf");
    expect(conf).toContain("listen 0.0.0.0:8080 default_server;");
    expect(conf).toContain("listen 10.0.0.1:8080 default_server;");
    expect(conf).toContain("    index hostname;");
    expect(conf).toContain("server_name b c;");
    expect(conf).toContain("  listen 80;\n  listen [::]:80;");
    expect(conf).toContain("  add_header X-B 1;");
  });

  it("creates users and groups like useradd would, keeping package-created accounts", () => {
    const p = render({
      users: {
        users: {
          alice: { isNormalUser: true, extraGroups: ["wheel", "www-data"], password: "pw", packages: ["tree"] },
          svc: { isSystemUser: true, hashedPassword: "$6$x$y" },
          bob: { isNormalUser: true, uid: 2000, description: "Bob" },
        },
        groups: { fixed: { gid: 1234 } },
      },
    });
    const passwd = text(p, "/etc/passwd");
    expect(passwd).toContain("www-data:x:33:33:");
    expect(passwd).toContain("alice:x:1000:100::/home/alice:/bin/bash");
    expect(passwd).toContain("bob:x:2000:100:Bob:/home/bob:/bin/bash");
    expect(passwd).toMatch(/^svc:x:999:\d+::\/var\/empty:\/usr\/sbin\/nologin$/m);
    const group = text(p, "/etc/group");
    expect(group).toContain("wheel:x:");
    expect(group).toMatch(/^wheel:x:\d+:alice$/m);
    expect(group).toContain("www-data:x:33:alice");
    expect(group).toContain("fixed:x:1234:");
    const shadow = text(p, "/etc/shadow");
    expect(shadow).toContain("root::"); // NixOS test VMs: empty root password
    expect(shadow).toContain("alice:$6$alice$hash-of-pw:");
    expect(shadow).toContain("svc:$6$x$y:");
    expect(shadow).toContain("bob:!:");
    expect(fileOf(p, "/etc/shadow").mode).toBe(0o640);
    expect(p.dirs).toContainEqual({ path: "/home/alice", mode: 0o700, owner: "alice", group: "users" });
    expect(p.perUserPackages).toEqual({ alice: ["tree"] });
    expect(text(p, "/etc/sudoers.d/vmrig-wheel")).toContain("%wheel ALL=(ALL:ALL) ALL");
  });

  it("writes environment.etc after packages, with mode and owner, and rejects text+source", () => {
    const p = render({
      environment: {
        etc: {
          "app/conf": { text: "x=1\n", mode: "0640", user: "www-data", group: "www-data" },
          copied: { source: "files/c" },
        },
        variables: { FOO: 'a "quoted" $value' },
      },
    });
    expect(fileOf(p, "/etc/app/conf")).toMatchObject({
      content: "x=1\n",
      mode: 0o640,
      owner: "www-data",
      group: "www-data",
    });
    expect(text(p, "/etc/copied")).toBe("contents of files/c");
    expect(text(p, "/etc/environment")).toContain('FOO="a \\"quoted\\" \\$value"');
    expect(text(p, "/etc/vmrig/backdoor.env")).toContain('export FOO="a \\"quoted\\" \\$value"');
    expect(() => render({ environment: { etc: { bad: { text: "a", source: "b" } } } })).toThrow(VmrigError);
  });

  it("renders nginx virtual hosts over Debian's default site", () => {
    const p = render({
      services: {
        nginx: {
          enable: true,
          virtualHosts: {
            first: {
              root: "/srv/a",
              locations: { "/api": { proxyPass: "http://127.0.0.1:3000", extraConfig: "proxy_set_header X 1;" } },
            },
            second: {},
          },
        },
      },
    });
    const conf = text(p, "/etc/nginx/sites-enabled/vmrig.conf");
    expect(conf).toContain("listen 80 default_server;");
    expect(conf).toContain("server_name first;");
    expect(conf).toContain("root /srv/a;");
    expect(conf).toContain("location /api {\n    proxy_pass http://127.0.0.1:3000;\n    proxy_set_header X 1;\n  }");
    expect(conf).toMatch(/server_name second;\n  root \/var\/www\/html;/);
    expect(conf.match(/default_server/g)).toHaveLength(2); // IPv4 and IPv6 of the first vhost only
    expect(p.removes).toContain("/etc/nginx/sites-enabled/default");
  });

  it("renders systemd services: new units, drop-ins over packaged ones, disabling", () => {
    const p = render({
      systemd: {
        services: {
          hello: {
            description: "Hello",
            wantedBy: ["multi-user.target"],
            after: ["network.target"],
            script: "echo hi",
            environment: { A: "1" },
            serviceConfig: { User: "www-data", Restart: "always" },
          },
          nginx: { serviceConfig: { LimitNOFILE: 4096 } },
          "apt-daily": { enable: false },
        },
      },
    });
    const unit = text(p, "/etc/systemd/system/hello.service");
    expect(unit).toContain("[Unit]\nDescription=Hello\nAfter=network.target");
    expect(unit).toContain("ExecStart=/etc/vmrig/units/hello-start");
    expect(unit).toContain('Environment="A=1"');
    expect(unit).toContain("User=www-data");
    expect(text(p, "/etc/vmrig/units/hello-start")).toBe("#!/bin/bash\nset -e\necho hi\n");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/multi-user.target.wants/hello.service",
      target: "/etc/systemd/system/hello.service",
    });
    expect(text(p, "/etc/systemd/system/nginx.service.d/vmrig.conf")).toContain("LimitNOFILE=4096");
    expect(p.symlinks).toContainEqual({ path: "/etc/systemd/system/apt-daily.service", target: "/dev/null" });
  });

  it("renders MariaDB replication for a master and a slave", () => {
    const master = render({
      services: {
        mysql: {
          enable: true,
          replication: { role: "master", masterUser: "rep", masterPassword: "pw", serverId: 1 },
          initialDatabases: [{ name: "db", schema: "create table t (i int);" }],
          ensureUsers: [{ name: "app", ensurePermissions: { "db.*": "ALL PRIVILEGES" } }],
        },
      },
    });
    const cnf = text(master, "/etc/mysql/mariadb.conf.d/90-vmrig.cnf");
    expect(cnf).toContain("server-id = 1");
    expect(cnf).toContain("log-bin = mysql-bin");
    expect(cnf).toContain("bind-address = 0.0.0.0");
    const sql = text(master, "/etc/vmrig/mysql-setup.sql");
    expect(sql).toContain("CREATE DATABASE IF NOT EXISTS `db`;\nUSE `db`;\ncreate table t (i int);");
    expect(sql).toContain("GRANT REPLICATION SLAVE ON *.* TO 'rep'@'%';");
    expect(sql).toContain("CREATE USER IF NOT EXISTS 'app'@'localhost' IDENTIFIED VIA unix_socket;");
    expect(text(master, "/etc/systemd/system/mariadb.service.d/vmrig-setup.conf")).toContain(
      "ExecStartPost=+/etc/vmrig/mysql-setup",
    );
    const slave = render({
      services: {
        mysql: {
          enable: true,
          replication: { role: "slave", serverId: 2, masterHost: "primary", masterUser: "rep", masterPassword: "p'w" },
        },
      },
    });
    expect(text(slave, "/etc/vmrig/mysql-setup.sql")).toContain(
      "CHANGE MASTER TO MASTER_HOST='primary', MASTER_USER='rep', MASTER_PASSWORD='p''w', MASTER_PORT=3306",
    );
  });

  it("lists the packages a config needs", () => {
    const c = evalNodes({
      m: {
        environment: { systemPackages: ["tree"] },
        users: { users: { a: { packages: ["htop"] } } },
        services: { nginx: { enable: true }, mysql: { enable: true } },
      },
    });
    expect(packagesOf(c.m!)).toEqual(["htop", "mariadb-server", "nginx", "tree"]);
  });
});

describe("rendering system options", () => {
  it("renders firewall ranges, trusted interfaces, per-interface ports and extra rules", () => {
    const fw = text(
      render({
        networking: {
          firewall: {
            allowedTCPPortRanges: [{ from: 8000, to: 8010 }],
            allowedUDPPortRanges: [{ from: 60000, to: 61000 }],
            trustedInterfaces: ["eth2"],
            interfaces: { eth1: { allowedTCPPorts: [22], allowedUDPPorts: [67] } },
            extraInputRules: "ip saddr 192.168.1.0/24 tcp dport 9000 accept",
          },
        },
      }),
      "/etc/nftables.conf",
    );
    expect(fw).toContain("tcp dport 8000-8010 accept");
    expect(fw).toContain("udp dport 60000-61000 accept");
    expect(fw).toContain('iifname "eth2" accept');
    expect(fw).toContain('iifname "eth1" tcp dport { 22 } accept');
    expect(fw).toContain('iifname "eth1" udp dport { 67 } accept');
    expect(fw).toContain("    ip saddr 192.168.1.0/24 tcp dport 9000 accept");
  });

  it("renders sysctl, tmpfiles, getty autologin and file systems", () => {
    const p = render({
      boot: { kernel: { sysctl: { "net.ipv4.ip_forward": 1, "vm.swappiness": "10", "kernel.sysrq": false } } },
      systemd: { tmpfiles: { rules: ["d /var/lib/app 0750 www-data www-data -"] } },
      services: { getty: { autoLoginUser: "alice" } },
      fileSystems: { "/mnt/scratch-1": { device: "tmpfs", fsType: "tmpfs", options: ["size=64m", "mode=1777"] } },
    });
    expect(text(p, "/etc/sysctl.d/90-vmrig.conf")).toBe(
      "net.ipv4.ip_forward = 1\nvm.swappiness = 10\nkernel.sysrq = 0\n",
    );
    expect(text(p, "/etc/vmrig/network-up")).toContain("sysctl -q -p /etc/sysctl.d/90-vmrig.conf");
    expect(text(p, "/etc/tmpfiles.d/vmrig.conf")).toBe("d /var/lib/app 0750 www-data www-data -\n");
    const getty = text(p, "/etc/systemd/system/getty@.service.d/vmrig-autologin.conf");
    expect(getty).toContain(
      "ExecStart=\nExecStart=-/sbin/agetty -o '-p -f -- \\\\u' --noclear --autologin alice %I linux",
    );
    const mount = text(p, "/etc/systemd/system/mnt-scratch\\x2d1.mount");
    expect(mount).toContain("[Mount]\nWhat=tmpfs\nWhere=/mnt/scratch-1\nType=tmpfs\nOptions=size=64m,mode=1777");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/local-fs.target.wants/mnt-scratch\\x2d1.mount",
      target: "/etc/systemd/system/mnt-scratch\\x2d1.mount",
    });
  });
});

describe("rendering service modules", () => {
  it("renders PostgreSQL: settings in conf.d, hba lines first, SQL once and on every start", () => {
    const c = evalNodes({
      m: {
        services: {
          postgresql: {
            enable: true,
            settings: { port: 5433, max_connections: 20, fsync: false },
            authentication: "host all all 192.168.1.0/24 trust",
            initialScript: "create table t (x int);",
            ensureDatabases: ["app"],
            ensureUsers: [
              { name: "app", ensureDBOwnership: true, ensureClauses: { createdb: true, superuser: false } },
            ],
          },
        },
      },
    });
    expect(c.m!.services.postgresql.settings.port).toBe(5433);
    expect(packagesOf(c.m!)).toContain("postgresql");
    const p = renderNode("m", c.m!, [], tree);
    const conf = text(p, "/etc/postgresql/17/main/conf.d/90-vmrig.conf");
    expect(conf).toContain("port = 5433\nmax_connections = 20\nfsync = off");
    expect(fileOf(p, "/etc/postgresql/17/main/conf.d/90-vmrig.conf").owner).toBe("postgres");
    expect(text(p, "/etc/postgresql/17/main/pg_hba.conf")).toMatch(
      /^# .*\nhost all all 192\.168\.1\.0\/24 trust\n\nlocal all postgres peer\n$/,
    );
    const setup = text(p, "/etc/vmrig/postgresql-setup");
    expect(setup).toContain("--port=5433");
    expect(setup).toMatch(/if \[ ! -e .*\.vmrig-initial-done \]; then\n.*postgresql-initial\.sql/);
    const ensure = text(p, "/etc/vmrig/postgresql-ensure.sql");
    expect(ensure).toContain(
      "SELECT format('CREATE DATABASE %I', 'app') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app')\\gexec",
    );
    expect(ensure).toContain('ALTER ROLE "app" NOSUPERUSER CREATEDB;');
    expect(ensure).toContain('ALTER DATABASE "app" OWNER TO "app";');
    expect(text(p, "/etc/systemd/system/postgresql@17-main.service.d/vmrig-setup.conf")).toContain(
      "ExecStartPost=+/etc/vmrig/postgresql-setup",
    );
  });

  it("defaults PostgreSQL's port, listens on every interface with enableTCPIP, and rejects ownership of a missing database", () => {
    const c = evalNodes({ m: { services: { postgresql: { enable: true, enableTCPIP: true } } } });
    expect(c.m!.services.postgresql.settings).toEqual({ port: 5432 });
    const p = renderNode("m", c.m!, [], tree);
    expect(text(p, "/etc/postgresql/17/main/conf.d/90-vmrig.conf")).toContain("listen_addresses = '*'");
    expect(p.files.some((f) => f.path.includes("postgresql-setup"))).toBe(false);
    const bad = evalNodes({
      m: { services: { postgresql: { enable: true, ensureUsers: [{ name: "x", ensureDBOwnership: true }] } } },
    });
    expect(() => renderNode("m", bad.m!, [], tree)).toThrow(/ensureDBOwnership but no database of that name/);
  });

  it("renders php-fpm pools with NixOS's socket path and unit name", () => {
    const c = evalNodes({
      m: {
        services: {
          phpfpm: {
            pools: {
              book: {
                settings: { "pm.max_children": 9 },
                phpOptions: "memory_limit = 64M\n; comment",
                phpEnv: { APP: "1" },
              },
            },
          },
        },
      },
    });
    expect(c.m!.services.phpfpm.pools.book!.socket).toBe("/run/phpfpm/book.sock");
    expect(packagesOf(c.m!)).toContain("php-fpm");
    const p = renderNode("m", c.m!, [], tree);
    const pool = text(p, "/etc/php/8.4/fpm/pool.d/book.conf");
    expect(pool).toContain(
      "[book]\nuser = www-data\nlisten = /run/phpfpm/book.sock\npm = dynamic\npm.max_children = 9\n",
    );
    expect(pool).toContain("listen.owner = www-data");
    expect(pool).toContain('env[APP] = "1"');
    expect(pool).toContain("php_admin_value[memory_limit] = 64M");
    expect(pool).not.toContain("comment");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/phpfpm-book.service",
      target: "/usr/lib/systemd/system/php8.4-fpm.service",
    });
    expect(text(p, "/etc/systemd/system/php8.4-fpm.service.d/vmrig.conf")).toContain("RuntimeDirectory=phpfpm");
  });

  it("renders OpenSSH: settings, ports in the firewall, authorized keys, a fresh host key per node", () => {
    const c = evalNodes({
      m: {
        services: {
          openssh: {
            enable: true,
            ports: [22, 2222],
            settings: { PermitRootLogin: "yes", PasswordAuthentication: false, AllowUsers: ["root", "alice"] },
          },
        },
        users: {
          users: {
            alice: { isNormalUser: true, openssh: { authorizedKeys: { keys: ["ssh-ed25519 AAAA alice@host"] } } },
          },
        },
      },
    });
    expect(c.m!.networking.firewall.allowedTCPPorts).toEqual([22, 2222]);
    const p = renderNode("m", c.m!, [], tree);
    const conf = text(p, "/etc/ssh/sshd_config.d/90-vmrig.conf");
    expect(conf).toContain("Port 22\nPort 2222\n");
    expect(conf).toContain(
      "PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication yes\nAllowUsers root\nAllowUsers alice",
    );
    expect(conf).toContain("AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u");
    expect(text(p, "/etc/ssh/authorized_keys.d/alice")).toBe("ssh-ed25519 AAAA alice@host\n");
    expect(p.removes).toContain("/etc/ssh/ssh_host_ed25519_key");
    expect(text(p, "/etc/systemd/system/ssh.service.d/vmrig.conf")).toMatch(
      /ExecStartPre=\nExecStartPre=.*ssh-keygen.*\nExecStartPre=\/usr\/sbin\/sshd -t/,
    );
    const closed = evalNodes({ m: { services: { openssh: { enable: true, openFirewall: false } } } });
    expect(closed.m!.networking.firewall.allowedTCPPorts).toEqual([]);
  });

  it("adds the forwarding NIC as a trusted eth0 when ports are forwarded", () => {
    const c = evalNodes({ m: { virtualisation: { forwardPorts: [{ host: { port: 8080 }, guest: { port: 80 } }] } } });
    expect(c.m!.networking.interfaces.eth0!.ipv4.addresses).toEqual([{ address: "10.0.2.15", prefixLength: 24 }]);
    expect(c.m!.networking.firewall.trustedInterfaces).toEqual(["eth0"]);
    expect(c.m!.virtualisation.forwardPorts[0]).toEqual({
      from: "host",
      proto: "tcp",
      host: { address: "127.0.0.1", port: 8080 },
      guest: { address: "", port: 80 },
    });
  });
});

describe("settings formats as NixOS renders them", () => {
  it("mysql: a list repeats the key, true is the bare key", () => {
    const p = render({
      services: {
        mysql: {
          enable: true,
          settings: { mysqld: { "binlog-ignore-db": ["a", "b"], "skip-name-resolve": true, "max-connections": 20 } },
        },
      },
    });
    const cnf = text(p, "/etc/mysql/mariadb.conf.d/90-vmrig.cnf");
    expect(cnf).toContain(
      "[mysqld]\nbinlog-ignore-db = a\nbinlog-ignore-db = b\nskip-name-resolve\nmax-connections = 20",
    );
  });

  it("postgresql: strings quoted, booleans on/off, a list one comma-separated string", () => {
    const p = render({
      services: {
        postgresql: { enable: true, settings: { shared_preload_libraries: ["a", "b"], fsync: false, work_mem: "4MB" } },
      },
    });
    const conf = text(p, "/etc/postgresql/17/main/conf.d/90-vmrig.conf");
    expect(conf).toContain("shared_preload_libraries = 'a,b'");
    expect(conf).toContain("fsync = off");
    expect(conf).toContain("work_mem = '4MB'");
  });
});

describe("overriding a unit a package ships", () => {
  it("rejects a second ExecStart before boot, naming NixOS's fix; a reset one is a drop-in", () => {
    const override = {
      systemd: { services: { nginx: { serviceConfig: { ExecStart: "/usr/sbin/nginx -g 'daemon off;'" } } } },
    };
    let error: unknown;
    try {
      render(override);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VmrigError);
    expect((error as VmrigError).message).toContain(
      "nginx.service comes with a Debian package and has its own ExecStart",
    );
    expect((error as VmrigError).hint).toContain(`serviceConfig.ExecStart = ["", "/usr/sbin/nginx -g 'daemon off;'"]`);
    const p = render({ systemd: { services: { nginx: { serviceConfig: { ExecStart: ["", "/bin/true"] } } } } });
    expect(text(p, "/etc/systemd/system/nginx.service.d/vmrig.conf")).toMatch(/ExecStart=\nExecStart=\/bin\/true/);
  });

  it("renders services.httpd: hosts with their Listen lines, ServerAdmin, modules linked as a2enmod does, NixOS's unit name", () => {
    const p = render({
      services: {
        httpd: {
          enable: true,
          adminAddr: "admin@example.org",
          extraModules: ["headers"],
          virtualHosts: {
            "web.test": {
              documentRoot: "/srv/web",
              listen: [{ port: 8080 }, { ip: "192.168.1.1", port: 8080 }, { ip: "192.168.1.1", port: 81 }],
              locations: { "/app/": { proxyPass: "http://127.0.0.1:80/" } },
            },
            other: { hostName: "other.test", serverAliases: ["o.test"] },
          },
        },
      },
    });
    expect(packagesOf(evalNodes({ m: { services: { httpd: { enable: true } } } }).m!)).toContain("apache2");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/httpd.service",
      target: "/usr/lib/systemd/system/apache2.service",
    });
    // *:8080 covers 192.168.1.1:8080 (Apache cannot bind both)
    expect(text(p, "/etc/apache2/ports.conf")).toMatch(/^Listen 8080\nListen 192\.168\.1\.1:81\nListen 80\n$/m);
    const site = text(p, "/etc/apache2/sites-enabled/vmrig.conf");
    expect(site).toContain("<VirtualHost *:8080 192.168.1.1:8080 192.168.1.1:81>\n  ServerName web.test");
    expect(site).toContain("  ServerAdmin admin@example.org\n  DocumentRoot /srv/web");
    expect(site).toContain("  ProxyPass /app/ http://127.0.0.1:80/");
    expect(site).toContain("  ServerName other.test\n  ServerAlias o.test");
    expect(p.removes).toContain("/etc/apache2/sites-enabled/000-default.conf");
    for (const f of ["headers.load", "proxy.load", "proxy.conf", "proxy_http.load"])
      expect(p.symlinks).toContainEqual({ path: `/etc/apache2/mods-enabled/${f}`, target: `../mods-available/${f}` });
    const e = errorOf(() => render({ services: { httpd: { enable: true, extraModules: ["rewrit"] } } }));
    expect(e.message).toContain("services.httpd.extraModules: Debian's apache2 has no module rewrit");
    expect(e.hint).toContain("headers, proxy, proxy_http");
  });
});
