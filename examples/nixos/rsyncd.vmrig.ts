// nixpkgs nixos/tests/rsyncd.nix, its Python test script verbatim (SPEC §11).
// Adapted, the nodes only: Debian's rsync package runs the daemon (rsync.service) from
// /etc/rsyncd.conf, written with the settings NixOS's services.rsyncd renders; the module
// path is /usr/share (NixOS: /nix/store). NixOS's `b` is socket-activated; Debian ships no
// rsync.socket, so both run the daemon, and `b.wait_for_unit("sockets.target")` still
// holds. Debian installs rsync.service disabled: the module enables it. Both machines are
// containers.
import { defineTest, type NodeModule } from "vmrig";

const node: NodeModule = {
  networking: { firewall: { allowedTCPPorts: [873] } },
  // Debian installs rsync.service disabled; services.rsyncd.enable starts it in NixOS
  systemd: { services: { rsync: { wantedBy: ["multi-user.target"] } } },
  environment: {
    systemPackages: ["rsync"],
    etc: {
      "rsyncd.conf": {
        text: [
          "reverse lookup = false",
          "forward lookup = false",
          "",
          "[tmp]",
          "path = /usr/share",
          "comment = test module",
          "",
        ].join("\n"),
      },
    },
  },
};

export default defineTest({
  name: "nixos-rsyncd",
  containers: { a: node, b: node },
  testScript: `
    start_all()
    a.wait_for_unit("rsync")
    b.wait_for_unit("sockets.target")
    b.succeed("rsync a::")
    a.succeed("rsync b::")
  `,
});
