import type { EvaluatedConfig } from "../../config/eval.js";
import { dynamicUserHome, enable, file, unit, type Patch } from "../patch.js";

/**
 * services.openarena → Debian's openarena-server run as NixOS runs it: openarena.service with
 * a dynamic user whose home (fs_homepath) is its state directory, and the server's console
 * in the journal. Debian's wrapper /usr/games/openarena-server sets the game's base path and
 * protocol; `extraFlags` follow it on the command line. Debian's own unit, which would take
 * the same port, is masked.
 */
export function renderOpenarena(config: EvaluatedConfig, patch: Patch): void {
  const oa = config.services.openarena;
  if (!oa.enable) return;
  patch.symlinks.push({ path: "/etc/systemd/system/openarena-server.service", target: "/dev/null" });
  patch.files.push(
    file(
      "/etc/systemd/system/openarena.service",
      unit({
        Unit: { Description: "OpenArena", After: "network.target" },
        Service: {
          ...dynamicUserHome("openarena"),
          ExecStart: ["/usr/games/openarena-server +set fs_homepath /var/lib/openarena", ...oa.extraFlags].join(" "),
          Restart: "on-failure",
          NoNewPrivileges: "true",
          PrivateDevices: "true",
        },
        Install: { WantedBy: "multi-user.target" },
      }),
    ),
  );
  enable(patch, "openarena.service", "multi-user.target");
}
