// nixpkgs nixos/tests/nfs/simple.nix (NFS version 4), its Python test script verbatim up to
// its last three subtests, and so without the `import time` only they use (SPEC §11).
// Adapted, the nodes only: NixOS's test-VM option `virtualisation.fileSystems` is
// `fileSystems` here, and the server's NFS grace period is 10 s (`services.nfs.settings`),
// not 90 s. The server runs Debian's nfs-kernel-server from `services.nfs.server`; each
// client mounts the export under remote-fs.target once the network is up, as NixOS does.
// Left out: "client 2 obtains lock after resetting client 1", "locks survive server
// reboot" and "unmounting during shutdown happens quickly": each resets or reboots a
// machine, minutes under software emulation.
import { defineModule, defineTest } from "vmrig";

const client = defineModule({
  fileSystems: {
    // nfs4 exports the export with fsid=0 as a virtual root directory
    "/data": { device: "server:/", fsType: "nfs", options: ["vers=4"] },
  },
  networking: { firewall: { enable: false } }, // FIXME: only open statd
});

export default defineTest({
  name: "nfs",
  nodes: {
    client1: client,
    client2: client,
    server: {
      services: {
        nfs: {
          server: {
            enable: true,
            exports: "/data 192.168.1.0/255.255.255.0(rw,no_root_squash,no_subtree_check,fsid=0)\n",
            createMountPoints: true,
          },
          // vmrig's: nfs.conf's shortest grace period, so a restarted server takes writes after
          // 10 s rather than the 90 s the script's comment expects (the script is unchanged)
          settings: { nfsd: { "grace-time": 10, "lease-time": 10 } },
        },
      },
      networking: { firewall: { enable: false } }, // FIXME: figure out what ports need to be allowed
    },
  },
  testScript: `
    server.wait_for_unit("nfs-server")
    server.succeed("systemctl start network-online.target")
    server.wait_for_unit("network-online.target")

    start_all()

    client1.wait_for_unit("data.mount")
    client1.succeed("echo bla > /data/foo")
    server.succeed("test -e /data/foo")

    client2.wait_for_unit("data.mount")
    client2.succeed("echo bla > /data/bar")
    server.succeed("test -e /data/bar")

    with subtest("restarting 'nfs-server' works correctly"):
        server.succeed("systemctl restart nfs-server")
        # will take 90 seconds due to the NFS grace period
        client2.succeed("echo bla >> /data/bar")

    with subtest("can get a lock"):
        client2.succeed("time flock -n -s /data/lock true")

    with subtest("client 2 fails to acquire lock held by client 1"):
        client1.succeed("flock -x /data/lock -c 'touch locked; sleep 100000' >&2 &")
        client1.wait_for_file("locked")
        client2.fail("flock -n -s /data/lock true")
  `,
});
