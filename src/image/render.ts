import { createHash } from "node:crypto";
import type { EvaluatedConfig } from "../config/eval.js";
import { configError } from "../util/errors.js";
import { enable, file, unit, type Patch, type UnitValue } from "./patch.js";
import { renderMysql } from "./services/mysql.js";
import { renderNginx } from "./services/nginx.js";
import { renderAuthorizedKeys, renderOpenssh } from "./services/openssh.js";
import { renderPhpfpm } from "./services/phpfpm.js";
import { renderPostgresql } from "./services/postgresql.js";

export type { Patch, FileOp } from "./patch.js";

export interface TreeInfo {
  passwd: string;
  group: string;
  shadow: string;
  /** does a package ship this unit (in /usr/lib/systemd/system or /lib/systemd/system)? */
  hasUnit(unit: string): boolean;
  /** names in a directory of the tree ([] if it does not exist) */
  listDir(p: string): string[];
  /** a text file of the tree */
  readFile(p: string): string;
  /** read a host file for `environment.etc.*.source` */
  readSource(p: string): Buffer;
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

/** Packages a config needs beyond the base set, in a stable order. */
export function packagesOf(config: EvaluatedConfig): string[] {
  const pkgs = new Set(config.environment.systemPackages);
  for (const u of Object.values(config.users.users)) for (const p of u.packages) pkgs.add(p);
  if (config.services.nginx.enable) pkgs.add("nginx");
  if (config.services.mysql.enable) pkgs.add("mariadb-server");
  if (config.services.postgresql.enable) pkgs.add("postgresql");
  if (Object.keys(config.services.phpfpm.pools).length) pkgs.add("php-fpm");
  if (config.services.openssh.enable) pkgs.add("openssh-server");
  return [...pkgs].sort();
}

export function renderNode(name: string, config: EvaluatedConfig, hosts: HostEntry[], tree: TreeInfo): Patch {
  const patch: Patch = { files: [], symlinks: [], dirs: [], removes: [], perUserPackages: {} };
  renderBoot(name, config, patch);
  renderNetwork(config, hosts, patch);
  renderFirewall(config, patch);
  renderUsers(config, tree, patch);
  renderEnvironment(config, tree, patch);
  renderNginx(config, patch);
  renderMysql(config, patch);
  renderPostgresql(config, tree, patch);
  renderPhpfpm(config, tree, patch);
  renderAuthorizedKeys(config, patch);
  renderOpenssh(config, patch);
  renderUnits(config, tree, patch);
  renderSystem(config, patch);
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

function renderNetwork(config: EvaluatedConfig, hosts: HostEntry[], patch: Patch): void {
  const lines = ["#!/bin/sh", "# generated by vmrig from networking.*", "set -e", "ip link set lo up"];
  for (const [iface, spec] of Object.entries(config.networking.interfaces).sort()) {
    lines.push(`ip link set ${iface} up`);
    for (const a of spec.ipv4.addresses) lines.push(`ip addr replace ${a.address}/${a.prefixLength} dev ${iface}`);
    for (const a of spec.ipv6.addresses)
      lines.push(`ip -6 addr replace ${a.address}/${a.prefixLength} dev ${iface} nodad`);
  }
  if (config.networking.defaultGateway) lines.push(`ip route replace default via ${config.networking.defaultGateway}`);
  if (config.networking.nat.enable)
    lines.push("echo 1 > /proc/sys/net/ipv4/ip_forward", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
  // Before anything runs (systemd-sysctl applies them again later).
  if (Object.keys(config.boot.kernel.sysctl).length) lines.push("sysctl -q -p /etc/sysctl.d/90-vmrig.conf || true");
  patch.files.push(file("/etc/vmrig/network-up", lines.join("\n") + "\n", 0o755));
  patch.files.push(
    file(
      "/etc/systemd/system/vmrig-network.service",
      unit({
        Unit: {
          Description: "vmrig static network configuration",
          DefaultDependencies: "no",
          After: "nftables.service systemd-sysctl.service",
          Before: "network.target network-online.target shutdown.target",
          Wants: "network.target",
          Conflicts: "shutdown.target",
        },
        Service: { Type: "oneshot", RemainAfterExit: "yes", ExecStart: "/etc/vmrig/network-up" },
      }),
    ),
  );
  enable(patch, "vmrig-network.service", "sysinit.target");
  // NixOS tests wait for network-online.target; here the network is static, so it is reached once
  // vmrig-network.service has run (systemd-networkd-wait-online is masked).
  enable(patch, "network-online.target", "multi-user.target", "/usr/lib/systemd/system/network-online.target");

  const hostLines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"];
  for (const h of hosts) {
    if (h.ipv4) hostLines.push(`${h.ipv4} ${h.name}`);
    if (h.ipv6) hostLines.push(`${h.ipv6} ${h.name}`);
  }
  if (!hosts.some((h) => h.name === config.networking.hostName))
    hostLines.push(`127.0.1.1 ${config.networking.hostName}`);
  if (config.networking.extraHosts) hostLines.push(config.networking.extraHosts.trimEnd());
  patch.files.push(file("/etc/hosts", hostLines.join("\n") + "\n"));
}

function renderFirewall(config: EvaluatedConfig, patch: Patch): void {
  const fw = config.networking.firewall;
  const rules: string[] = [];
  if (fw.enable) {
    const set = (ports: number[]) => `{ ${[...new Set(ports)].sort((a, b) => a - b).join(", ")} }`;
    rules.push(
      "table inet vmrig-firewall {",
      "  chain input {",
      "    type filter hook input priority filter; policy drop;",
      '    iifname "lo" accept',
      "    ct state established,related accept",
      "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, mld-listener-query } accept",
    );
    if (fw.allowPing) rules.push("    icmp type echo-request accept", "    icmpv6 type echo-request accept");
    for (const i of fw.trustedInterfaces) rules.push(`    iifname ${JSON.stringify(i)} accept`);
    if (fw.allowedTCPPorts.length) rules.push(`    tcp dport ${set(fw.allowedTCPPorts)} accept`);
    if (fw.allowedUDPPorts.length) rules.push(`    udp dport ${set(fw.allowedUDPPorts)} accept`);
    for (const r of fw.allowedTCPPortRanges) rules.push(`    tcp dport ${r.from}-${r.to} accept`);
    for (const r of fw.allowedUDPPortRanges) rules.push(`    udp dport ${r.from}-${r.to} accept`);
    for (const [iface, open] of Object.entries(fw.interfaces)) {
      if (open.allowedTCPPorts.length)
        rules.push(`    iifname ${JSON.stringify(iface)} tcp dport ${set(open.allowedTCPPorts)} accept`);
      if (open.allowedUDPPorts.length)
        rules.push(`    iifname ${JSON.stringify(iface)} udp dport ${set(open.allowedUDPPorts)} accept`);
    }
    if (fw.extraInputRules.trim())
      rules.push(
        ...fw.extraInputRules
          .trimEnd()
          .split("\n")
          .map((l) => `    ${l.trim()}`),
      );
    rules.push("  }", "}");
  }
  const nat = config.networking.nat;
  if (nat.enable) {
    if (!nat.externalInterface)
      throw configError('networking.nat.enable needs networking.nat.externalInterface (e.g. "eth2")');
    const internal = nat.internalInterfaces.map((i) => JSON.stringify(i)).join(", ");
    const ext = JSON.stringify(nat.externalInterface);
    rules.push(
      "table ip vmrig-nat {",
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      `    oifname ${ext} masquerade`,
      "  }",
      "}",
      "table inet vmrig-forward {",
      "  chain forward {",
      "    type filter hook forward priority filter; policy drop;",
      "    ct state established,related accept",
      ...(internal ? [`    iifname { ${internal} } oifname ${ext} accept`] : []),
      "  }",
      "}",
    );
  }
  patch.files.push(
    file(
      "/etc/nftables.conf",
      [
        "#!/usr/sbin/nft -f",
        "# generated by vmrig from networking.firewall and networking.nat",
        "flush ruleset",
        ...rules,
      ].join("\n") + "\n",
      0o755,
    ),
  );
  enable(patch, "nftables.service", "sysinit.target", "/usr/lib/systemd/system/nftables.service");
}

interface PwEntry {
  name: string;
  fields: string[];
}

function parseDb(text: string): PwEntry[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const fields = l.split(":");
      return { name: fields[0]!, fields };
    });
}

function renderUsers(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
  const passwd = parseDb(tree.passwd);
  const group = parseDb(tree.group);
  const shadow = parseDb(tree.shadow);
  const usedUids = new Set(passwd.map((e) => Number(e.fields[2])));
  const usedGids = new Set(group.map((e) => Number(e.fields[2])));
  const alloc = (used: Set<number>, from: number, step: number): number => {
    let id = from;
    while (used.has(id)) id += step;
    used.add(id);
    return id;
  };
  const ensureGroup = (name: string, gid: number | null, system: boolean): PwEntry => {
    let g = group.find((e) => e.name === name);
    if (!g) {
      const id = gid ?? alloc(usedGids, system ? 999 : 1000, system ? -1 : 1);
      usedGids.add(id);
      g = { name, fields: [name, "x", String(id), ""] };
      group.push(g);
    } else if (gid !== null && Number(g.fields[2]) !== gid) {
      g.fields[2] = String(gid);
    }
    return g;
  };
  for (const [name, g] of Object.entries(config.users.groups)) ensureGroup(name, g.gid, false);

  // NixOS test VMs give root an empty password, so consoles log in without one.
  const declaredRoot = config.users.users.root;
  const users = {
    ...config.users.users,
    root: declaredRoot
      ? { ...declaredRoot, password: declaredRoot.hashedPassword === null ? (declaredRoot.password ?? "") : null }
      : defaultRootUser(),
  };
  for (const [name, u] of Object.entries(users)) {
    if (u.isNormalUser && u.isSystemUser)
      throw configError(`users.users.${name}: isNormalUser and isSystemUser are both set`);
    const existing = passwd.find((e) => e.name === name);
    const primaryName = u.group || (u.isNormalUser ? "users" : name);
    const primary = ensureGroup(primaryName, null, !u.isNormalUser);
    const uid =
      u.uid ??
      (existing ? Number(existing.fields[2]) : alloc(usedUids, u.isNormalUser ? 1000 : 999, u.isNormalUser ? 1 : -1));
    usedUids.add(uid);
    const home = u.home || (existing?.fields[5] ?? (u.isNormalUser ? `/home/${name}` : "/var/empty"));
    const shell = u.shell || (existing?.fields[6] ?? (u.isNormalUser ? "/bin/bash" : "/usr/sbin/nologin"));
    const fields = [
      name,
      "x",
      String(uid),
      primary.fields[2]!,
      u.description || (existing?.fields[4] ?? ""),
      home,
      shell,
    ];
    if (existing) existing.fields = fields;
    else passwd.push({ name, fields });

    let hash =
      u.hashedPassword ??
      (u.password === null ? undefined : u.password === "" ? "" : tree.hashPassword(u.password, name));
    const sh = shadow.find((e) => e.name === name);
    if (hash === undefined) hash = sh?.fields[1] ?? "!";
    const shadowFields = [name, hash, "19000", "0", "99999", "7", "", "", ""];
    if (sh) sh.fields = shadowFields;
    else shadow.push({ name, fields: shadowFields });

    for (const gname of u.extraGroups) {
      const g = ensureGroup(gname, null, false);
      const members = (g.fields[3] ?? "").split(",").filter(Boolean);
      if (!members.includes(name)) g.fields[3] = [...members, name].join(",");
    }
    if ((u.isNormalUser || u.createHome) && name !== "root") {
      patch.dirs.push({ path: home, mode: 0o700, owner: name, group: primaryName });
    }
    if (u.packages.length > 0) patch.perUserPackages[name] = [...u.packages];
  }
  const db = (entries: PwEntry[]) => entries.map((e) => e.fields.join(":")).join("\n") + "\n";
  patch.files.push(
    file("/etc/passwd", db(passwd)),
    file("/etc/group", db(group)),
    file("/etc/shadow", db(shadow), 0o640, "root", "shadow"),
  );
  // gshadow is optional for every tool vmrig's guests use; keep it consistent by regenerating it.
  patch.files.push(
    file(
      "/etc/gshadow",
      group.map((g) => `${g.name}:!::${g.fields[3] ?? ""}`).join("\n") + "\n",
      0o640,
      "root",
      "shadow",
    ),
  );
  // NixOS: members of wheel may use sudo.
  patch.files.push(file("/etc/sudoers.d/vmrig-wheel", "%wheel ALL=(ALL:ALL) ALL\n", 0o440));
  // Per-user PATH (users.users.*.packages): login shells through profile.d,
  // `su USER -c …` and other non-interactive bash through BASH_ENV.
  const perUser =
    '[ -n "${USER:-}" ] && [ -d "/etc/profiles/per-user/$USER/bin" ] && case ":$PATH:" in *":/etc/profiles/per-user/$USER/bin:"*) ;; *) PATH="/etc/profiles/per-user/$USER/bin:$PATH" ;; esac\n';
  patch.files.push(file("/etc/vmrig/bash_env", perUser), file("/etc/profile.d/vmrig-per-user.sh", perUser));
}

function defaultRootUser(): EvaluatedConfig["users"]["users"][string] {
  return {
    isNormalUser: false,
    isSystemUser: false,
    uid: 0,
    group: "root",
    extraGroups: [],
    home: "/root",
    createHome: false,
    shell: "/bin/bash",
    description: "root",
    password: "",
    hashedPassword: null,
    packages: [],
    openssh: { authorizedKeys: { keys: [] } },
  };
}

function renderEnvironment(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
  const vars: Record<string, string> = { BASH_ENV: "/etc/vmrig/bash_env", ...config.environment.variables };
  const envLines = Object.entries(vars).map(([k, v]) => `${k}="${v.replace(/(["\\$`])/g, "\\$1")}"`);
  patch.files.push(file("/etc/environment", envLines.join("\n") + "\n"));
  patch.files.push(file("/etc/vmrig/backdoor.env", envLines.map((l) => `export ${l}`).join("\n") + "\n"));
  for (const [rel, spec] of Object.entries(config.environment.etc)) {
    const p = `/etc/${rel.replace(/^\/+/, "")}`;
    if ((spec.text === null) === (spec.source === null)) {
      throw configError(`environment.etc.${JSON.stringify(rel)}: set exactly one of \`text\` and \`source\``);
    }
    const content = spec.text ?? tree.readSource(spec.source!);
    patch.files.push(file(p, content, parseInt(spec.mode, 8), spec.user, spec.group));
  }
}

function renderUnits(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
  for (const [name, svc] of Object.entries(config.systemd.services)) {
    const unitName = name.includes(".") ? name : `${name}.service`;
    const packaged = tree.hasUnit(unitName);
    if (!svc.enable) {
      patch.symlinks.push({ path: `/etc/systemd/system/${unitName}`, target: "/dev/null" });
      continue;
    }
    const base = unitName.replace(/\.service$/, "");
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
    Object.assign(service, svc.serviceConfig);
    const unitSection: Record<string, UnitValue | undefined> = {
      Description: svc.description || undefined,
      After: svc.after.join(" ") || undefined,
      Before: svc.before.join(" ") || undefined,
      Requires: svc.requires.join(" ") || undefined,
      Wants: svc.wants.join(" ") || undefined,
      ...svc.unitConfig,
    };
    const body = unit({ Unit: unitSection, Service: service });
    const unitPath = packaged ? `/etc/systemd/system/${unitName}.d/vmrig.conf` : `/etc/systemd/system/${unitName}`;
    patch.files.push(file(unitPath, body));
    for (const target of svc.wantedBy)
      enable(patch, unitName, target, packaged ? `/usr/lib/systemd/system/${unitName}` : undefined);
  }
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

function renderSystem(config: EvaluatedConfig, patch: Patch): void {
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
    patch.files.push(
      file(
        `/etc/systemd/system/${name}`,
        unit({
          Unit: { Description: `vmrig fileSystems.${where}` },
          Mount: { What: fs.device, Where: where, Type: fs.fsType, Options: fs.options.join(",") },
        }),
      ),
    );
    enable(patch, name, "local-fs.target");
  }
}
