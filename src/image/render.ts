import { createHash } from "node:crypto";
import { autostartItems, debianPackages, scriptPackages, type EvaluatedConfig } from "../config/eval.js";
import { configError } from "../util/errors.js";
import { enable, file, unit, type Patch, type UnitValue } from "./patch.js";
import { renderKeepalived } from "./services/keepalived.js";
import { renderOpenarena } from "./services/openarena.js";
import { renderTeeworlds } from "./services/teeworlds.js";
import { renderMysql } from "./services/mysql.js";
import { renderVsftpd } from "./services/vsftpd.js";
import { renderNginx } from "./services/nginx.js";
import { renderHttpd } from "./services/httpd.js";
import { renderNfsServer, renderNfsSettings } from "./services/nfs.js";
import { redisServers, renderRedis } from "./services/redis.js";
import { renderAuthorizedKeys, renderOpenssh } from "./services/openssh.js";
import { renderPhpfpm } from "./services/phpfpm.js";
import { renderPostgresql } from "./services/postgresql.js";
import { renderXserver, xserverPackages } from "./services/xserver.js";
import { renderFirewall, renderNetwork } from "./render-network.js";
import { renderUsers } from "./render-users.js";
import { addConfigTriggers } from "./switch.js";

export type { Patch, FileOp } from "./patch.js";

export interface TreeInfo {
  passwd: string;
  group: string;
  shadow: string;
  /** does a package ship this unit (in /usr/lib/systemd/system or /lib/systemd/system; with `user`, /usr/lib/systemd/user)? A template's instance counts when the template is shipped. */
  hasUnit(unit: string, user?: boolean): boolean;
  /** names in a directory of the tree ([] if it does not exist) */
  listDir(p: string): string[];
  /** a text file of the tree */
  readFile(p: string): string;
  /** read a host file (relative to the test file) that option `what` names (`environment.etc.*.source`, …) */
  readSource(p: string, what: string): Buffer;
  hashPassword(password: string, salt: string): string;
}

export interface HostEntry {
  name: string;
  ipv4?: string;
  ipv6?: string;
}

/** Units that cost boot time and do nothing useful in a throwaway test VM. */
export const MASKED_UNITS = [
  "getty-static.service",
  "systemd-random-seed.service",
  "systemd-udev-settle.service",
  "systemd-journal-flush.service",
  "systemd-networkd-wait-online.service",
  "systemd-pstore.service",
  "systemd-firstboot.service",
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "fstrim.timer",
  "e2scrub_all.timer",
  "e2scrub_reap.service",
  "man-db.timer",
];

/**
 * Generators systemd runs before it starts anything. Under TCG each exec costs
 * 100-300 ms, and none of these does anything useful in a test VM. The getty
 * generator is replaced by enabling serial-getty@ttyS0 directly.
 */
export const MASKED_GENERATORS = [
  "systemd-debug-generator",
  "systemd-fstab-generator",
  "systemd-getty-generator",
  "systemd-gpt-auto-generator",
  "systemd-hibernate-resume-generator",
  "systemd-rc-local-generator",
  "systemd-run-generator",
  "systemd-ssh-generator",
  "systemd-system-update-generator",
  "systemd-sysv-generator",
  "systemd-tpm2-generator",
  "systemd-bless-boot-generator",
  "systemd-cryptsetup-generator",
  "systemd-integritysetup-generator",
  "systemd-veritysetup-generator",
  "systemd-import-generator",
  "systemd-factory-reset-generator",
];

/**
 * Packages a config needs beyond the base set, in a stable order: its specialisations'
 * too, so switching to one installs nothing.
 */
export function packagesOf(config: EvaluatedConfig): string[] {
  const pkgs = new Set(ownPackages(config));
  for (const s of Object.values(config.specialisation ?? {})) for (const p of ownPackages(s.configuration)) pkgs.add(p);
  return [...pkgs].sort();
}

/** The packages of one configuration alone, without its specialisations'. */
export function ownPackages(config: EvaluatedConfig): string[] {
  const pkgs = new Set(debianPackages(config.environment.systemPackages));
  for (const u of Object.values(config.users.users)) for (const p of u.packages) pkgs.add(p);
  if (config.services.nginx.enable) pkgs.add("nginx");
  if (config.services.httpd.enable) pkgs.add("apache2");
  if (config.services.mysql.enable) pkgs.add("mariadb-server");
  if (config.services.postgresql.enable) pkgs.add("postgresql");
  if (Object.keys(config.services.phpfpm.pools).length) pkgs.add("php-fpm");
  if (config.services.openssh.enable) pkgs.add("openssh-server");
  if (config.services.vsftpd.enable) pkgs.add("vsftpd");
  // a login starts the user's systemd (user@UID.service) only through pam_systemd and logind
  if (Object.keys(config.systemd.user.services).length) pkgs.add("libpam-systemd");
  // NAT's chains are iptables(-nft) ones, as NixOS's; scripts use iptables on the router too
  if (config.networking.nat.enable) pkgs.add("iptables");
  if (config.services.nfs.server.enable) pkgs.add("nfs-kernel-server");
  if (config.services.keepalived.enable) pkgs.add("keepalived");
  if (config.services.teeworlds.enable) pkgs.add("teeworlds-server");
  if (config.services.openarena.enable) pkgs.add("openarena-server");
  if (redisServers(config).length) pkgs.add("redis-server");
  for (const p of xserverPackages(config)) pkgs.add(p);
  // what mounts a network file system (NixOS: boot.supportedFilesystems)
  const fsTypes = Object.values(config.fileSystems).map((f) => f.fsType);
  if (fsTypes.some((t) => t === "nfs" || t === "nfs4")) pkgs.add("nfs-common");
  if (fsTypes.some((t) => t === "cifs" || t === "smb3")) pkgs.add("cifs-utils");
  // The cloud kernel is in the base layer; the full one goes into the node's package layer.
  if (config.boot.kernelPackages === "full") pkgs.add("linux-image-amd64");
  return [...pkgs].sort();
}

/**
 * A node's configuration as a patch. `switchable`: the node has specialisations, so its
 * units carry what switch-to-configuration reads (image/switch.ts).
 */
export function renderNode(
  name: string,
  config: EvaluatedConfig,
  hosts: HostEntry[],
  tree: TreeInfo,
  switchable = false,
): Patch {
  const patch: Patch = { files: [], symlinks: [], dirs: [], removes: [], perUserPackages: {} };
  renderBoot(name, config, patch);
  renderNetwork(config, hosts, patch);
  renderFirewall(config, patch);
  renderUsers(config, tree, patch);
  renderPamLimits(config, tree, patch);
  renderEnvironment(config, tree, patch);
  renderNginx(config, patch);
  renderVsftpd(config, patch);
  renderHttpd(config, tree, patch);
  renderMysql(config, patch);
  renderPostgresql(config, tree, patch);
  renderPhpfpm(config, tree, patch);
  renderAuthorizedKeys(config, patch);
  renderOpenssh(config, patch);
  renderNfsServer(config, patch);
  renderNfsSettings(config, patch);
  renderRedis(config, patch);
  renderKeepalived(config, patch);
  renderTeeworlds(config, patch);
  renderOpenarena(config, patch);
  renderXserver(config, patch);
  renderUnits(config, tree, patch, switchable);
  renderSystem(config, patch);
  if (switchable) addConfigTriggers(patch);
  return patch;
}

function renderBoot(name: string, config: EvaluatedConfig, patch: Patch): void {
  for (const unit of MASKED_UNITS) patch.symlinks.push({ path: `/etc/systemd/system/${unit}`, target: "/dev/null" });
  for (const gen of MASKED_GENERATORS)
    patch.symlinks.push({ path: `/etc/systemd/system-generators/${gen}`, target: "/dev/null" });
  // What the getty generator would have added for console=ttyS0.
  enable(patch, "serial-getty@ttyS0.service", "getty.target", "/usr/lib/systemd/system/serial-getty@.service");
  patch.files.push(
    file("/etc/systemd/journald.conf.d/vmrig.conf", "[Journal]\nStorage=volatile\nForwardToConsole=no\n"),
    file("/etc/hostname", `${config.networking.hostName}\n`),
    file("/etc/machine-id", createHash("sha256").update(`vmrig:${name}`).digest("hex").slice(0, 32) + "\n", 0o444),
    file("/etc/fstab", "# vmrig: the root file system is mounted by vmrig's initrd\n"),
    // Debian's "D /tmp" empties /tmp at boot, after the early backdoor may have written there.
    file(
      "/etc/tmpfiles.d/tmp.conf",
      "# vmrig: /tmp is a fresh tmpfs each boot; do not empty it under running commands\nd /tmp 1777 root root -\n",
    ),
    file("/etc/resolv.conf", "# vmrig: guests have no DNS server; names resolve through /etc/hosts\n"),
  );
  // The backdoor is started by /usr/lib/vmrig/init before systemd (guest/init).
}

function renderEnvironment(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
  const vars: Record<string, string> = { BASH_ENV: "/etc/vmrig/bash_env", ...config.environment.variables };
  const envLines = Object.entries(vars).map(([k, v]) => `${k}="${v.replace(/(["\\$`])/g, "\\$1")}"`);
  patch.files.push(file("/etc/environment", envLines.join("\n") + "\n"));
  // As in NixOS, commands run by the backdoor may use the X server.
  const x = config.services.xserver;
  const display = x.displayManager.gdm.enable ? ["DISPLAY=:0", "XAUTHORITY=/run/vmrig/xauthority"] : ["DISPLAY=:0"];
  const backdoorLines = x.enable ? [...envLines, ...display] : envLines;
  patch.files.push(file("/etc/vmrig/backdoor.env", backdoorLines.map((l) => `export ${l}`).join("\n") + "\n"));
  for (const [rel, spec] of Object.entries(config.environment.etc)) {
    const p = `/etc/${rel.replace(/^\/+/, "")}`;
    if ((spec.text === null) === (spec.source === null)) {
      throw configError(`environment.etc.${JSON.stringify(rel)}: set exactly one of \`text\` and \`source\``);
    }
    const content = spec.text ?? tree.readSource(spec.source!, `environment.etc.${JSON.stringify(rel)}.source`);
    patch.files.push(file(p, content, parseInt(spec.mode, 8), spec.user, spec.group));
  }
  // lib.writeScriptBin: on every user's PATH, as NixOS's system profile is
  for (const script of scriptPackages(config.environment.systemPackages)) {
    if (!script.name)
      throw configError("environment.systemPackages: a script has no name (make it with lib.writeScriptBin)");
    patch.files.push(file(`/usr/local/bin/${script.name}`, script.text, 0o755));
  }
  // lib.makeAutostartItem: the package's own desktop entry, started by every graphical login
  const items = autostartItems(config.environment.systemPackages);
  const shipped = items.length ? tree.listDir("/usr/share/applications") : [];
  for (const item of items) {
    const entry = `/usr/share/applications/${item.autostart}.desktop`;
    if (!shipped.includes(`${item.autostart}.desktop`)) {
      const entries = shipped.filter((f) => f.endsWith(".desktop")).map((f) => f.slice(0, -".desktop".length));
      throw configError(
        `lib.makeAutostartItem: package ${JSON.stringify(item.package)} has no desktop entry ${JSON.stringify(item.autostart)} (${entry})`,
        {
          hint: entries.length
            ? `desktop entries in the image: ${entries.join(", ")}`
            : "the image has no desktop entries at all: is the package a graphical application?",
        },
      );
    }
    patch.files.push(file(`/etc/xdg/autostart/${item.autostart}.desktop`, tree.readFile(entry)));
  }
}

/** security.pam.services.NAME.limits: pam_limits for that service's sessions, from a file of its own. */
function renderPamLimits(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
  for (const [name, svc] of Object.entries(config.security.pam.services)) {
    if (!svc.limits.length) continue;
    if (!tree.listDir("/etc/pam.d").includes(name))
      throw configError(`security.pam.services.${name}: the image has no PAM service ${name} (/etc/pam.d/${name})`, {
        hint: `PAM services here: ${tree.listDir("/etc/pam.d").join(", ")}; install the package that provides it`,
      });
    const conf = `/etc/security/limits-${name}.conf`;
    const lines = svc.limits.map((l) => {
      if (!l.item) throw configError(`security.pam.services.${name}.limits: an entry has no \`item\``);
      return `${l.domain} ${l.type} ${l.item} ${l.value}`;
    });
    patch.files.push(
      file(conf, `# generated by vmrig from security.pam.services.${name}.limits\n${lines.join("\n")}\n`),
    );
    patch.files.push(
      file(
        `/etc/pam.d/${name}`,
        `${tree.readFile(`/etc/pam.d/${name}`).trimEnd()}\n# vmrig: security.pam.services.${name}.limits\nsession required pam_limits.so conf=${conf}\n`,
      ),
    );
  }
}

/** Where a unit set lives: the system's units, or every user's (systemd --user). */
interface UnitScope {
  /** the option that declares them, for errors */
  option: "systemd.services" | "systemd.user.services";
  /** where vmrig writes units, drop-ins and .wants links */
  etc: string;
  /** where packages ship them */
  lib: string[];
  user: boolean;
}

const SYSTEM_UNITS: UnitScope = {
  option: "systemd.services",
  etc: "/etc/systemd/system",
  lib: ["/usr/lib/systemd/system", "/lib/systemd/system"],
  user: false,
};
const USER_UNITS: UnitScope = {
  option: "systemd.user.services",
  etc: "/etc/systemd/user",
  lib: ["/usr/lib/systemd/user"],
  user: true,
};

function renderUnits(config: EvaluatedConfig, tree: TreeInfo, patch: Patch, switchable: boolean): void {
  renderUnitSet(config.systemd.services, SYSTEM_UNITS, tree, patch, switchable);
  // user units run in each user's systemd (started at login): NixOS's systemd.user.services
  renderUnitSet(config.systemd.user.services, USER_UNITS, tree, patch, false);
}

type ServiceDecl = EvaluatedConfig["systemd"]["services"][string];

function renderUnitSet(
  services: Record<string, ServiceDecl>,
  scope: UnitScope,
  tree: TreeInfo,
  patch: Patch,
  switchable: boolean,
): void {
  for (const [name, svc] of Object.entries(services)) {
    // (a name may hold dots, as GNOME's org.gnome.Shell@wayland does: only a unit suffix counts)
    const unitName = /\.(service|socket|timer|path|target|mount)$/.test(name) ? name : `${name}.service`;
    const packaged = tree.hasUnit(unitName, scope.user);
    if (!svc.enable) {
      patch.symlinks.push({ path: `${scope.etc}/${unitName}`, target: "/dev/null" });
      continue;
    }
    // scripts of user units live apart: a user unit and a system unit may share a name
    const base = `${scope.user ? "user-" : ""}${unitName.replace(/\.service$/, "")}`;
    const env: string[] = Object.entries(svc.environment).map(([k, v]) => `"${k}=${v.replace(/(["\\])/g, "\\$1")}"`);
    if (svc.path.length) {
      const dirs = svc.path.map((p) => (p.startsWith("/") ? p : "/usr/bin"));
      env.push(
        `"PATH=${[...new Set([...dirs, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])].join(":")}"`,
      );
    }
    const service: Record<string, UnitValue | undefined> = {};
    if (env.length) service.Environment = env.join(" ");
    if (svc.preStart) {
      patch.files.push(file(`/etc/vmrig/units/${base}-pre-start`, `#!/bin/bash\nset -e\n${svc.preStart}\n`, 0o755));
      service.ExecStartPre = `/etc/vmrig/units/${base}-pre-start`;
    }
    if (svc.script) {
      patch.files.push(file(`/etc/vmrig/units/${base}-start`, `#!/bin/bash\nset -e\n${svc.script}\n`, 0o755));
      if (packaged) service.ExecStart = ["", `/etc/vmrig/units/${base}-start`];
      else service.ExecStart = `/etc/vmrig/units/${base}-start`;
    }
    if (svc.reload) {
      patch.files.push(file(`/etc/vmrig/units/${base}-reload`, `#!/bin/bash\nset -e\n${svc.reload}\n`, 0o755));
      service.ExecReload = `/etc/vmrig/units/${base}-reload`;
    }
    if (packaged) checkPackagedOverride(name, unitName, svc.serviceConfig, tree, scope);
    Object.assign(service, svc.serviceConfig);
    const unitSection: Record<string, UnitValue | undefined> = {
      Description: svc.description || undefined,
      After: svc.after.join(" ") || undefined,
      Before: svc.before.join(" ") || undefined,
      Requires: svc.requires.join(" ") || undefined,
      Wants: svc.wants.join(" ") || undefined,
      ...(switchable ? switchKeys(svc) : {}),
      ...svc.unitConfig,
    };
    const body = unit({ Unit: unitSection, Service: service });
    const unitPath = packaged ? `${scope.etc}/${unitName}.d/vmrig.conf` : `${scope.etc}/${unitName}`;
    patch.files.push(file(unitPath, body));
    for (const target of svc.wantedBy)
      enable(patch, unitName, target, packaged ? `${scope.lib[0]}/${unitName}` : `${scope.etc}/${unitName}`, scope.etc);
  }
}

/** The template a unit instance comes from (`org.gnome.Shell@.service` for `org.gnome.Shell@wayland.service`); other names as they are. */
export function templateOf(unit: string): string {
  return unit.replace(/@[^.]+\./, "@.");
}

/**
 * What switch-to-configuration reads in a unit (as NixOS writes them): its X-…IfChanged
 * flags, and triggers that change the unit's file when what it runs changes. The scripts
 * live at fixed paths in /etc/vmrig/units, so their hashes stand in for NixOS's store paths.
 */
export function switchKeys(svc: {
  script: string;
  preStart: string;
  reload: string;
  restartIfChanged: boolean;
  reloadIfChanged: boolean;
  stopIfChanged: boolean;
  restartTriggers: string[];
  reloadTriggers: string[];
}): Record<string, UnitValue | undefined> {
  const digest = (parts: string[]) => createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 16);
  const restart = [svc.script, svc.preStart, ...svc.restartTriggers];
  return {
    "X-RestartIfChanged": svc.restartIfChanged ? undefined : false,
    "X-ReloadIfChanged": svc.reloadIfChanged ? true : undefined,
    "X-StopIfChanged": svc.stopIfChanged ? undefined : false,
    "X-Restart-Triggers": restart.some(Boolean) ? digest(restart) : undefined,
    "X-Reload-Triggers":
      svc.reload || svc.reloadTriggers.length ? digest([svc.reload, ...svc.reloadTriggers]) : undefined,
  };
}

/**
 * A drop-in for a unit a package ships adds to it: a second ExecStart makes systemd
 * reject a service that is not Type=oneshot (`bad-setting`, and it never starts). Said
 * here, before anything boots, with the fix NixOS users write.
 */
function checkPackagedOverride(
  name: string,
  unitName: string,
  serviceConfig: Record<string, UnitValue>,
  tree: TreeInfo,
  scope: UnitScope,
): void {
  const v = serviceConfig.ExecStart;
  if (v === undefined) return;
  const list = Array.isArray(v) ? v.map(String) : [String(v)];
  if (list[0] === "") return;
  let shipped = "";
  for (const dir of scope.lib) {
    for (const file of [unitName, templateOf(unitName)]) {
      try {
        shipped = tree.readFile(`${dir}/${file}`);
        if (shipped) break;
      } catch {
        // not in this directory
      }
    }
    if (shipped) break;
  }
  // a oneshot may have several; a unit without one of its own gets this one
  if (/^\s*Type\s*=\s*oneshot\s*$/m.test(shipped)) return;
  if (shipped && !/^\s*ExecStart\s*=/m.test(shipped)) return;
  const example = JSON.stringify(["", ...list]).replace(/","/g, '", "');
  throw configError(
    `${scope.option}.${name}.serviceConfig.ExecStart: ${unitName} comes with a Debian package and has its own ExecStart; a drop-in adds a second one, and systemd rejects the unit (bad-setting)`,
    { hint: `reset it first, as in NixOS: serviceConfig.ExecStart = ${example}` },
  );
}

/** systemd-escape --path, for mount unit names. */
export function escapePath(p: string): string {
  const trimmed = p.replace(/\/+/g, "/").replace(/^\/|\/$/g, "");
  if (trimmed === "") return "-";
  return trimmed
    .split("/")
    .map((seg) =>
      [...Buffer.from(seg)]
        .map((b, i) => {
          const ch = String.fromCharCode(b);
          return /[A-Za-z0-9:_]/.test(ch) || (ch === "." && i > 0) ? ch : `\\x${b.toString(16).padStart(2, "0")}`;
        })
        .join(""),
    )
    .join("-");
}

/**
 * Drivers of the full kernel for hardware QEMU emulates but no test uses: under TCG the
 * floppy and IDE probes cost boot time, and vga16fb would claim the VGA before bochs.
 */
const FULL_KERNEL_BLACKLIST = ["floppy", "pcspkr", "vga16fb", "ata_piix", "ata_generic"];

function renderSystem(config: EvaluatedConfig, patch: Patch): void {
  if (config.boot.kernelPackages === "full")
    patch.files.push(
      file(
        "/etc/modprobe.d/vmrig.conf",
        "# vmrig: drivers for emulated hardware no test uses (boot time)\n" +
          FULL_KERNEL_BLACKLIST.map((m) => `blacklist ${m}`).join("\n") +
          "\n",
      ),
    );
  const sysctl = Object.entries(config.boot.kernel.sysctl);
  if (sysctl.length) {
    const v = (x: string | number | boolean) => (typeof x === "boolean" ? (x ? "1" : "0") : String(x));
    patch.files.push(file("/etc/sysctl.d/90-vmrig.conf", sysctl.map(([k, x]) => `${k} = ${v(x)}`).join("\n") + "\n"));
  }
  if (config.systemd.tmpfiles.rules.length) {
    patch.files.push(file("/etc/tmpfiles.d/vmrig.conf", config.systemd.tmpfiles.rules.join("\n") + "\n"));
  }
  const autologin = config.services.getty.autoLoginUser;
  if (autologin) {
    for (const [tmpl, term] of [
      ["getty@", "linux"],
      ["serial-getty@", "vt220"],
    ] as const) {
      patch.files.push(
        file(
          `/etc/systemd/system/${tmpl}.service.d/vmrig-autologin.conf`,
          unit({
            Service: {
              ExecStart: ["", `-/sbin/agetty -o '-p -f -- \\\\u' --noclear --autologin ${autologin} %I ${term}`],
            },
          }),
        ),
      );
    }
  }
  for (const [where, fs] of Object.entries(config.fileSystems)) {
    if (!where.startsWith("/"))
      throw configError(`fileSystems.${JSON.stringify(where)}: a mount point must be an absolute path`);
    if (!fs.device) throw configError(`fileSystems.${JSON.stringify(where)}.device is not set`);
    const name = `${escapePath(where)}.mount`;
    // A network file system is mounted once the network is up, under remote-fs.target (as
    // systemd's fstab generator and so NixOS do): under local-fs.target it would wait for a
    // network that itself comes after local-fs.target.
    const remote = isNetworkFs(fs.fsType, fs.options);
    patch.files.push(
      file(
        `/etc/systemd/system/${name}`,
        unit({
          Unit: {
            Description: `vmrig fileSystems.${where}`,
            ...(remote ? { Wants: "network-online.target", After: "network-online.target remote-fs-pre.target" } : {}),
          },
          Mount: { What: fs.device, Where: where, Type: fs.fsType, Options: fs.options.join(",") },
        }),
      ),
    );
    enable(patch, name, remote ? "remote-fs.target" : "local-fs.target");
  }
}

/** File systems that need the network (systemd's list, and `_netdev`). */
export function isNetworkFs(fsType: string | undefined, options: string[]): boolean {
  return (
    options.includes("_netdev") ||
    ["nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "ncpfs", "glusterfs", "ceph", "davfs"].includes(
      fsType ?? "",
    )
  );
}
