// nixpkgs nixos/tests/lighttpd.nix, its Python test script verbatim (SPEC §11).
// Adapted, the nodes only: Debian's lighttpd package instead of services.lighttpd, and the
// document root (a Nix store path in NixOS) is Debian's /var/www/html with the same file,
// written by a tmpfiles rule. `server` is a container: the test needs no VM.
import { defineTest } from "vmrig";

export default defineTest({
  name: "nixos-lighttpd",
  containers: {
    server: {
      environment: { systemPackages: ["lighttpd", "curl"] },
      systemd: { tmpfiles: { rules: ["f /var/www/html/file.txt 0644 root root - hello nixos test"] } },
    },
  },
  testScript: `
    start_all()
    server.wait_for_unit("lighttpd.service")
    res = server.succeed("curl --fail http://localhost/file.txt")
    assert "hello nixos test" in res, f"bad server response: '{res}'"
    server.succeed("systemctl reload lighttpd")
  `,
});
