import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Logger } from "../../src/session/logger.js";
import { createTopology, type Topology } from "../../src/session/topology.js";
import type { Machine } from "../../src/machine/machine.js";
import { snakeoil } from "./snakeoil.js";

// Every service module and virtualisation option of issue #3 on real VMs
// (nginx and MariaDB are also covered by the examples).
let topo: Topology;
let server: Machine;
let client: Machine;
let resultDir: string;
let webPort: number;
let hostHttp: http.Server;
let hostHttpPort: number;

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  resultDir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrig-services-"));
  webPort = await freePort();
  // Closing after each answer proves each guest connection gets its own host connection.
  hostHttp = http
    .createServer((_, res) => res.setHeader("connection", "close").end("hello from the host\n"))
    .listen(0, "127.0.0.1");
  await new Promise((r) => hostHttp.once("listening", r));
  hostHttpPort = (hostHttp.address() as net.AddressInfo).port;
  topo = await createTopology(
    {
      name: "services",
      nodes: {
        server: ({ config }) => ({
          services: {
            postgresql: {
              enable: true,
              enableTCPIP: true,
              settings: { port: 5433, max_connections: 30 },
              authentication: "host all all 192.168.1.0/24 trust\nhost all all 2001:db8:1::/64 trust",
              initialScript:
                "create table notes (id serial primary key, body text not null);\ninsert into notes (body) values ('from the initial script');",
              ensureDatabases: ["app"],
              ensureUsers: [{ name: "app", ensureDBOwnership: true, ensureClauses: { createdb: true } }],
            },
            phpfpm: {
              pools: { web: { phpEnv: { GREETING: "hi from phpEnv" }, phpOptions: "memory_limit = 77M" } },
            },
            nginx: {
              enable: true,
              virtualHosts: {
                server: {
                  root: "/var/www/app",
                  locations: {
                    "~ \\.php$": {
                      extraConfig: `include snippets/fastcgi-php.conf;\nfastcgi_pass unix:${config.services.phpfpm.pools.web!.socket};`,
                    },
                  },
                },
              },
            },
            httpd: {
              enable: true,
              adminAddr: "admin@example.org",
              extraModules: ["headers"],
              virtualHosts: {
                // nginx has port 80: Apache answers on 8080, the first host for names no host claims
                "web.test": {
                  documentRoot: "/etc/vmrig-site",
                  listen: [{ port: 8080 }],
                  locations: { "/php/": { proxyPass: "http://127.0.0.1:80/" } },
                  extraConfig: 'Header set X-Vmrig "from-apache"',
                },
                other: { hostName: "other.test", documentRoot: "/etc/vmrig-other", listen: [{ port: 8080 }] },
              },
            },
            openssh: {
              enable: true,
              settings: { PermitRootLogin: "no" },
              ports: [22, 2222],
              listenAddresses: [
                { addr: "0.0.0.0", port: 22 },
                { addr: "127.0.0.1", port: 2222 },
              ],
              extraConfig: "MaxAuthTries 4\n",
            },
          },
          users: {
            users: {
              alice: {
                isNormalUser: true,
                openssh: { authorizedKeys: { keys: [snakeoil.publicKey] } },
                // relative to the test's source folder (the repository's root here)
                hashedPasswordFile: "test/vm/alice.hash",
              },
            },
          },
          security: {
            pam: { services: { su: { limits: [{ domain: "alice", type: "hard", item: "nofile", value: 4242 }] } } },
          },
          environment: {
            etc: {
              "vmrig-site/index.html": { text: "the apache site\n" },
              "vmrig-other/index.html": { text: "the other host\n" },
              "vmrig-app/index.php": {
                text: '<?php echo php_sapi_name(), " ", getenv("GREETING"), " ", ini_get("memory_limit"), " ", posix_getpwuid(posix_geteuid())["name"], "\\n";',
              },
            },
          },
          systemd: { tmpfiles: { rules: ["L+ /var/www/app - - - - /etc/vmrig-app"] } },
          networking: { firewall: { allowedTCPPorts: [80, 8080, config.services.postgresql.settings.port] } },
          virtualisation: {
            emptyDiskImages: [64],
            resolution: { x: 1280, y: 800 },
            forwardPorts: [
              { from: "host", host: { port: webPort }, guest: { port: 80 } },
              { from: "guest", guest: { address: "10.0.2.100", port: 8000 }, host: { port: hostHttpPort } },
            ],
          },
        }),
        client: {
          environment: {
            systemPackages: ["postgresql-client", "openssh-client"],
            etc: { "ssh/snakeoil": { text: snakeoil.privateKey, mode: "0600" } },
          },
        },
      },
    },
    {
      logger: new Logger(path.join(resultDir, "log.txt"), () => undefined),
      resultDir,
      sourceDir: process.cwd(),
      accel: "auto",
      keepVmState: false,
    },
  );
  [client, server] = topo.machines as [Machine, Machine];
  await Promise.all([server.start(), client.start()]);
});

afterAll(async () => {
  await topo?.close();
  hostHttp?.close();
  fs.rmSync(resultDir, { recursive: true, force: true });
});

describe("service modules on a real VM", () => {
  it("services.postgresql: settings, initialScript, ensureDatabases/Users, authentication, the port in config", async () => {
    await server.waitForUnit("postgresql");
    const psql = "runuser -u postgres -- psql -p 5433 -tAc";
    expect(await server.succeed(`${psql} 'show max_connections'`)).toBe("30\n");
    expect(await server.succeed(`${psql} 'select body from notes'`)).toBe("from the initial script\n");
    expect(await server.succeed(`${psql} "select rolcreatedb, rolcanlogin from pg_roles where rolname = 'app'"`)).toBe(
      "t|t\n",
    );
    expect(
      await server.succeed(`${psql} "select pg_get_userbyid(datdba) from pg_database where datname = 'app'"`),
    ).toBe("app\n");
    // trust for vlan 1 (authentication), TCP on every interface (enableTCPIP), the port open in the firewall
    expect(await client.succeed("psql -h server -p 5433 -U app -d app -tAc 'select current_user'")).toBe("app\n");
    // the initial script ran once: a restart keeps one row
    await server.systemctl("restart postgresql");
    await server.waitForUnit("postgresql");
    expect(await server.succeed(`${psql} 'select count(*) from notes'`)).toBe("1\n");
  });

  it("services.phpfpm: a pool behind nginx, with phpEnv and phpOptions, under NixOS's unit name", async () => {
    await server.waitForUnit("phpfpm-web");
    await server.waitForUnit("nginx");
    await server.waitForOpenUnixSocket("/run/phpfpm/web.sock");
    expect(await server.succeed("curl -sf http://localhost/index.php")).toBe("fpm-fcgi hi from phpEnv 77M www-data\n");
  });

  it("services.httpd: virtual hosts by name, a module, a proxied location, under NixOS's unit name", async () => {
    await server.waitForUnit("httpd");
    expect(await client.succeed("curl -sf http://server:8080/")).toBe("the apache site\n");
    expect(await client.succeed("curl -sf -H 'Host: other.test' http://server:8080/")).toBe("the other host\n");
    expect(await client.succeed("curl -sfI http://server:8080/")).toMatch(/^X-Vmrig: from-apache\r?$/m);
    // through Apache's mod_proxy_http to nginx and PHP-FPM
    expect(await client.succeed("curl -sf http://server:8080/php/index.php")).toMatch(/^fpm-fcgi hi from phpEnv/);
    await server.succeed("apache2ctl -S 2>&1 | grep -q 'other.test'");
    await server.succeed("grep -rq 'ServerAdmin admin@example.org' /etc/apache2/sites-enabled/");
  });

  it("services.openssh: key login through authorizedKeys, settings applied, a host key made on this node", async () => {
    await server.waitForUnit("sshd");
    const ssh = "ssh -i /etc/ssh/snakeoil -o StrictHostKeyChecking=accept-new -o BatchMode=yes";
    expect(await client.succeed(`${ssh} alice@server whoami`)).toBe("alice\n");
    await client.fail(`${ssh} root@server true`); // PermitRootLogin no
    await server.succeed("test -s /etc/ssh/ssh_host_ed25519_key", "test ! -e /etc/ssh/ssh_host_rsa_key");
    expect(await server.succeed("sshd -T | grep -i '^permitrootlogin'")).toBe("permitrootlogin no\n");
    // listenAddresses and extraConfig: port 2222 on loopback only, 22 everywhere
    expect(await server.succeed("sshd -T | grep -i '^maxauthtries'")).toBe("maxauthtries 4\n");
    const listening = await server.succeed("ss -Hltn | awk '{print $4}' | sort");
    expect(listening).toContain("0.0.0.0:22\n");
    expect(listening).toContain("127.0.0.1:2222\n");
    expect(listening).not.toContain("0.0.0.0:2222");
  });

  it("users.users.NAME.hashedPasswordFile and security.pam.services.NAME.limits", async () => {
    const hash = fs.readFileSync(path.join(import.meta.dirname, "alice.hash"), "utf8").trim();
    expect((await server.succeed("getent shadow alice | cut -d: -f2")).trim()).toBe(hash);
    // su's sessions get the limit (pam_limits from its own file); root's shell does not
    expect((await server.succeed("su - alice -c 'ulimit -Hn'")).trim()).toBe("4242");
    expect((await server.succeed("ulimit -Hn")).trim()).not.toBe("4242");
  });

  it("virtualisation.forwardPorts: the host reaches the guest and the guest reaches a host port it was given, nothing else", async () => {
    const res = await fetch(`http://127.0.0.1:${webPort}/index.php`);
    expect(await res.text()).toBe("fpm-fcgi hi from phpEnv 77M www-data\n");
    for (let i = 0; i < 2; i++) {
      expect(await server.succeed("curl -sf --max-time 10 http://10.0.2.100:8000/")).toBe("hello from the host\n");
    }
    // the user-mode NIC is restricted: the host's own address is not reachable
    await server.fail(`curl -sf --max-time 5 http://10.0.2.2:${hostHttpPort}/`);
    await server.fail("ip route get 1.1.1.1");
  });

  it("virtualisation.emptyDiskImages: a blank disk to format and mount", async () => {
    expect(await server.succeed("lsblk -bdno SIZE /dev/vdb")).toBe(`${64 * 1024 * 1024}\n`);
    await server.succeed(
      "mkfs.ext4 -q /dev/vdb",
      "mkdir -p /mnt/data",
      "mount /dev/vdb /mnt/data",
      "echo ok > /mnt/data/f",
      "umount /mnt/data",
    );
  });

  it("virtualisation.resolution: the display adapter offers the configured mode", async () => {
    // The guest's cloud kernel has no DRM driver, so the mode is checked on QEMU's adapter (EDID).
    const get = (property: string) => server.qmp("qom-get", { path: "/machine/peripheral/video0", property });
    expect([await get("xres"), await get("yres")]).toEqual([1280, 800]);
  });
});
