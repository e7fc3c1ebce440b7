// The seeds' BitTorrent test (nixpkgs nixos/tests/bittorrent.nix), its Python script as
// NixOS has it but for what Debian names differently (SPEC §11). A tracker seeds a file;
// client1, behind a NAT router, downloads it; the seeder stops; client2, outside, can then
// only get the file from client1, through the port client1 opened in the router by UPnP.
//
// Adapted, for Debian:
// - transmission is Debian's transmission-daemon: its unit is `transmission-daemon`
//   (the script's stop_job), its settings are /etc/transmission-daemon/settings.json
//   (RPC without a password from localhost, port forwarding on as in NixOS, no DHT).
// - Debian's opentracker serves only whitelisted torrents: after creating the torrent the
//   script adds its info hash to /etc/opentracker/whitelist.txt and reloads the tracker.
// - the web server that serves the torrent is lighttpd (NixOS: httpd), its document root
//   holding a link to /tmp/test.torrent.
// - miniupnpd (Debian's, with its nftables backend) ships its unit disabled: enabled here;
//   its own forward chain is told to pass the LAN's traffic out.
// - lighttpd is told not to keep a /tmp of its own (Debian's unit has PrivateTmp).
// - the file served is /usr/bin/bash (NixOS: hello's source), the same in every image.
// Every machine is a container: the test needs no kernel of its own.
import { defineTest, lib, type NodeModule } from "vmrig";

const file = "/usr/bin/bash";
const internalRouterAddress = "192.168.3.1";
const internalClient1Address = "192.168.3.2";
const externalRouterAddress = "80.100.100.1";
const externalClient2Address = "80.100.100.2";
const externalTrackerAddress = "80.100.100.3";
const downloadDir = "/var/lib/transmission/Downloads";

const address = (a: string) => lib.mkForce([{ address: a, prefixLength: 24 }]);

const transmissionConfig: NodeModule = {
  environment: {
    systemPackages: ["transmission-daemon", "transmission-cli"],
    etc: {
      "transmission-daemon/settings.json": {
        user: "debian-transmission",
        group: "debian-transmission",
        mode: "0600",
        text: JSON.stringify(
          {
            "dht-enabled": false,
            "message-level": 2,
            "download-dir": downloadDir,
            "port-forwarding-enabled": true,
            "rpc-authentication-required": false,
            "rpc-whitelist": "127.0.0.1",
          },
          null,
          2,
        ),
      },
    },
  },
  systemd: { tmpfiles: { rules: [`d ${downloadDir} 0755 debian-transmission debian-transmission -`] } },
};

export default defineTest({
  name: "bittorrent",
  containers: {
    tracker: {
      imports: [transmissionConfig],
      virtualisation: { vlans: [1] },
      networking: {
        firewall: { enable: false },
        interfaces: { eth1: { ipv4: { addresses: address(externalTrackerAddress) } } },
      },
      environment: { systemPackages: ["opentracker", "lighttpd"] },
      systemd: {
        tmpfiles: { rules: ["L+ /var/www/html/test.torrent - - - - /tmp/test.torrent"] },
        // Debian's lighttpd has a /tmp of its own; httpd in NixOS serves the shared one
        services: { lighttpd: { serviceConfig: { PrivateTmp: false } } },
      },
    },
    router: {
      virtualisation: { vlans: [1, 2] },
      networking: {
        nat: { enable: true, internalInterfaces: ["eth2"], externalInterface: "eth1" },
        firewall: { enable: true, trustedInterfaces: ["eth2"] },
        interfaces: {
          eth1: { ipv4: { addresses: address(externalRouterAddress) } },
          eth2: { ipv4: { addresses: address(internalRouterAddress) } },
        },
      },
      environment: {
        systemPackages: ["miniupnpd-nftables"],
        etc: {
          "miniupnpd/miniupnpd.conf": {
            text: [
              "ext_ifname=eth1",
              `ext_ip=${externalRouterAddress}`,
              "listening_ip=eth2",
              "enable_natpmp=yes",
              "enable_upnp=yes",
              "secure_mode=yes",
              "system_uptime=yes",
              "uuid=190ba8ec-e36e-4eb0-9c43-8945d5c0201e",
              "allow 1024-65535 192.168.3.0/24 1024-65535",
              "deny 0-65535 0.0.0.0/0 0-65535",
              "",
            ].join("\n"),
          },
        },
      },
      systemd: {
        services: {
          miniupnpd: {
            wantedBy: ["multi-user.target"],
            // miniupnpd's nftables setup makes a forward chain of its own that drops all but
            // its holes; this router forwards its LAN out too (the nat rules above), so that
            // chain lets through what the router's own forward chain does
            serviceConfig: {
              ExecStartPost: [
                "+/usr/sbin/nft add rule inet filter forward ct state established,related accept",
                "+/usr/sbin/nft add rule inet filter forward iifname eth2 accept",
              ],
            },
          },
        },
      },
    },
    client1: {
      imports: [transmissionConfig],
      virtualisation: { vlans: [2] },
      environment: { systemPackages: ["miniupnpc"] },
      networking: {
        interfaces: { eth1: { ipv4: { addresses: address(internalClient1Address) } } },
        defaultGateway: internalRouterAddress,
        firewall: { enable: false },
      },
    },
    client2: {
      imports: [transmissionConfig],
      virtualisation: { vlans: [1] },
      networking: {
        interfaces: { eth1: { ipv4: { addresses: address(externalClient2Address) } } },
        firewall: { enable: false },
      },
    },
  },
  testScript: `
    start_all()

    # Wait for network and miniupnpd.
    router.systemctl("start network-online.target")
    router.wait_for_unit("network-online.target")
    router.wait_for_unit("miniupnpd")

    # Create the torrent.
    tracker.succeed("mkdir ${downloadDir}/data")
    tracker.succeed(
        "cp ${file} ${downloadDir}/data/test.tar.bz2"
    )
    tracker.succeed(
        "transmission-create ${downloadDir}/data/test.tar.bz2 --private --tracker http://${externalTrackerAddress}:6969/announce --outfile /tmp/test.torrent"
    )
    tracker.succeed("chmod 644 /tmp/test.torrent")
    # (Debian's opentracker serves only the torrents on its whitelist)
    tracker.succeed("transmission-show /tmp/test.torrent | sed -n 's/^ *Hash v1: *//p; s/^ *Hash: *//p' >> /etc/opentracker/whitelist.txt")

    # Start the tracker.  !!! use a less crappy tracker
    tracker.systemctl("start network-online.target")
    tracker.wait_for_unit("network-online.target")
    tracker.wait_for_unit("opentracker.service")
    tracker.systemctl("reload opentracker")
    tracker.wait_for_open_port(6969)

    # Start the initial seeder.
    tracker.succeed(
        "transmission-remote --add /tmp/test.torrent --no-portmap --no-dht --download-dir ${downloadDir}/data"
    )

    # Now we should be able to download from the client behind the NAT.
    tracker.wait_for_unit("lighttpd")
    client1.systemctl("start network-online.target")
    client1.wait_for_unit("network-online.target")
    client1.succeed("transmission-remote --add http://${externalTrackerAddress}/test.torrent >&2 &")
    client1.wait_for_file("${downloadDir}/test.tar.bz2")
    client1.succeed(
        "cmp ${downloadDir}/test.tar.bz2 ${file}"
    )

    # Bring down the initial seeder.
    tracker.stop_job("transmission-daemon")

    # Now download from the second client.  This can only succeed if
    # the first client created a NAT hole in the router.
    client2.systemctl("start network-online.target")
    client2.wait_for_unit("network-online.target")
    client2.succeed(
        "transmission-remote --add http://${externalTrackerAddress}/test.torrent --no-portmap --no-dht >&2 &"
    )
    client2.wait_for_file("${downloadDir}/test.tar.bz2")
    client2.succeed(
        "cmp ${downloadDir}/test.tar.bz2 ${file}"
    )
  `,
});
