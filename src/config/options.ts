import { option, t } from "./dsl.js";
import { serviceOptions } from "./options-services.js";

/**
 * Every node option vmrig understands, with NixOS's paths and Debian's meaning.
 * Options are added here only together with their rendering in image/render.ts;
 * an option that is accepted but does nothing would be a silent lie.
 */

const systemdService = t.submodule({
  enable: option(t.bool, true, "Whether the unit is enabled (false masks a packaged unit)."),
  description: option(t.str, "", "Unit description."),
  wantedBy: option(t.listOf(t.str), [], "Targets that pull the unit in (e.g. multi-user.target)."),
  after: option(t.listOf(t.str), [], "Ordering: start after these units."),
  before: option(t.listOf(t.str), [], "Ordering: start before these units."),
  requires: option(t.listOf(t.str), [], "Hard dependencies."),
  wants: option(t.listOf(t.str), [], "Soft dependencies."),
  path: option(t.listOf(t.str), [], "Directories (or package bin dirs) prepended to the unit's PATH."),
  environment: option(t.attrsOf(t.str), {}, "Environment variables of the service."),
  script: option(t.str, "", "Shell script run as ExecStart (bash, `set -e`)."),
  preStart: option(t.str, "", "Shell script run as ExecStartPre."),
  reload: option(t.str, "", "Shell script run as ExecReload (what `systemctl reload` and `reloadIfChanged` run)."),
  restartIfChanged: option(
    t.bool,
    true,
    "Whether switch-to-configuration restarts the unit when it changed (false: it is left running as it was).",
  ),
  reloadIfChanged: option(
    t.bool,
    false,
    "Whether switch-to-configuration reloads the unit, rather than restarting it, when it changed.",
  ),
  stopIfChanged: option(
    t.bool,
    true,
    "Whether switch-to-configuration stops a changed unit before it changes the files, then starts it (false: a restart after).",
  ),
  restartTriggers: option(
    t.listOf(t.str),
    [],
    "Values whose change makes switch-to-configuration restart the unit (NixOS: store paths of its configuration).",
  ),
  reloadTriggers: option(t.listOf(t.str), [], "Values whose change makes switch-to-configuration reload the unit."),
  serviceConfig: option(
    t.attrsOf(t.either(t.str, t.int, t.bool, t.listOf(t.str))),
    {},
    "Raw [Service] settings; lists become repeated keys.",
  ),
  unitConfig: option(t.attrsOf(t.either(t.str, t.int, t.bool, t.listOf(t.str))), {}, "Raw [Unit] settings."),
});

const address = t.submodule({
  address: option(t.str, "", "The address."),
  prefixLength: option(t.int, 24, "Prefix length."),
});

/** A script on the PATH (NixOS's `pkgs.writeScriptBin`), made by `lib.writeScriptBin`. */
export const scriptPackage = t.submodule({
  name: option(t.str, "", "The command's name."),
  text: option(t.str, "", "The script, with its #! line."),
});

/** A desktop entry started at login (NixOS's `pkgs.makeAutostartItem`), made by `lib.makeAutostartItem`. */
export const autostartItem = t.submodule({
  autostart: option(t.str, "", "The desktop entry's name: /usr/share/applications/NAME.desktop."),
  package: option(t.str, "", "The Debian package that ships it (installed too)."),
});

const portRange = t.submodule({
  from: option(t.int, 0, "First port."),
  to: option(t.int, 0, "Last port."),
});

const user = t.submodule({
  name: option(t.str, "", "The account's name: the attribute's name (as in NixOS; here it cannot differ from it)."),
  isNormalUser: option(t.bool, false, "A human account: uid ≥ 1000, home created, bash shell, group `users`."),
  isSystemUser: option(t.bool, false, "A system account: uid < 1000, no login shell."),
  uid: option(t.nullOr(t.int), null, "Fixed uid; allocated when null."),
  group: option(
    t.str,
    "",
    "Primary group (default: `users` for normal users, a group named after the user otherwise).",
  ),
  extraGroups: option(t.listOf(t.str), [], "Supplementary groups; groups that do not exist are created."),
  home: option(t.str, "", "Home directory (default /home/NAME for normal users, /var/empty otherwise)."),
  createHome: option(t.bool, false, "Create the home directory (always for normal users)."),
  shell: option(t.str, "", "Login shell (default /bin/bash for normal users, /usr/sbin/nologin otherwise)."),
  description: option(t.str, "", "GECOS field."),
  password: option(t.nullOr(t.str), null, 'Clear-text password, hashed into /etc/shadow ("" = no password).'),
  hashedPassword: option(t.nullOr(t.str), null, "crypt(3) hash written to /etc/shadow."),
  hashedPasswordFile: option(
    t.nullOr(t.str),
    null,
    "A file whose first line is the crypt(3) hash (used when hashedPassword is not set).",
    "a host file, relative to the test file, read when the image is built (NixOS reads it on the machine at activation)",
  ),
  packages: option(
    t.listOf(t.str),
    [],
    "Debian packages whose programs are on this user's PATH only.",
    "Installed system-wide by apt; their executables are moved out of /usr/bin into /etc/profiles/per-user/NAME/bin, which PAM (su, login) and /etc/profile put on that user's PATH.",
  ),
  openssh: {
    authorizedKeys: {
      keys: option(
        t.listOf(t.str),
        [],
        "Public keys that may log in as this user over SSH.",
        "/etc/ssh/authorized_keys.d/NAME, which sshd reads besides ~/.ssh/authorized_keys",
      ),
    },
  },
});

export const nodeOptions = {
  system: {
    stateVersion: option(t.str, "", "Accepted for NixOS compatibility and ignored."),
  },
  debian: {
    suite: option(t.enum(["trixie", "bookworm"]), "trixie", "Debian release of the image."),
    mirror: option(t.str, "http://deb.debian.org/debian", "Debian mirror used to build the image."),
  },
  environment: {
    systemPackages: option(
      t.listOf(t.either(t.str, scriptPackage, autostartItem)),
      [],
      "Debian packages installed system-wide, scripts made by `lib.writeScriptBin(name, text)`, and desktop entries started at login made by `lib.makeAutostartItem({ name, package })`.",
      "apt-get install --no-install-recommends into the node's package layer; Debian's default of enabling a packaged service is kept. A script is written to /usr/local/bin/NAME (NixOS: `pkgs.writeScriptBin`); an autostart item copies the package's /usr/share/applications/NAME.desktop to /etc/xdg/autostart (NixOS: `pkgs.makeAutostartItem`)",
    ),
    etc: option(
      t.attrsOf(
        t.submodule({
          text: option(t.nullOr(t.str), null, "File contents."),
          source: option(t.nullOr(t.str), null, "Host file copied in (path relative to the test file)."),
          mode: option(t.str, "0644", "Octal mode."),
          user: option(t.str, "root", "Owner (may be an account a package creates)."),
          group: option(t.str, "root", "Group."),
        }),
      ),
      {},
      "Files under /etc, written after every package is installed (so they win over conffiles).",
    ),
    variables: option(
      t.attrsOf(t.str),
      {},
      "Variables set for every login and every backdoor command.",
      "/etc/environment",
    ),
  },
  security: {
    pam: {
      services: option(
        t.attrsOf(
          t.submodule({
            limits: option(
              t.listOf(
                t.submodule({
                  domain: option(t.str, "*", "Who the limit applies to: a user, @group or *."),
                  type: option(t.enum(["soft", "hard", "-"]), "-", "soft, hard, or - for both."),
                  item: option(t.str, "", "What is limited: nofile, nproc, memlock, core, …"),
                  value: option(t.either(t.str, t.int), "", "The limit (a number, or unlimited)."),
                }),
              ),
              [],
              "Resource limits for sessions of this PAM service (pam_limits).",
              "/etc/security/limits-NAME.conf, read by a `session required pam_limits.so conf=…` line appended to /etc/pam.d/NAME",
            ),
          }),
        ),
        {},
        "PAM services by name (login, su, sshd, …).",
      ),
    },
  },
  users: {
    users: option(t.attrsOf(user), {}, "User accounts.", "/etc/passwd, /etc/shadow and /etc/group written directly"),
    groups: option(t.attrsOf(t.submodule({ gid: option(t.nullOr(t.int), null, "Fixed gid.") })), {}, "Groups."),
    mutableUsers: option(t.bool, true, "Accepted for NixOS compatibility; Debian accounts are always mutable."),
  },
  networking: {
    hostName: option(t.str, "", "Host name (default: the node name).", "/etc/hostname"),
    extraHosts: option(t.str, "", "Lines appended to /etc/hosts."),
    interfaces: option(
      t.attrsOf(
        t.submodule({
          ipv4: { addresses: option(t.listOf(address), [], "IPv4 addresses of the interface.") },
          ipv6: { addresses: option(t.listOf(address), [], "IPv6 addresses of the interface.") },
        }),
      ),
      {},
      "Static addresses. The evaluated config also lists the addresses vmrig assigns on each vlan (eth1, eth2, …).",
      "set by vmrig-network.service with ip(8) early in boot",
    ),
    defaultGateway: option(t.nullOr(t.str), null, "IPv4 default route via this address."),
    useDHCP: option(
      t.bool,
      true,
      "Accepted for NixOS compatibility (nixpkgs tests set it to false).",
      "no DHCP client runs in a vmrig guest: every vlan interface has its static address either way",
    ),
    nftables: {
      enable: option(
        t.bool,
        false,
        "Accepted for NixOS compatibility: which backend NixOS uses for its firewall.",
        "vmrig's firewall is an nftables table either way, loaded by nftables.service (also named firewall.service); NAT is iptables(-nft) chains either way",
      ),
    },
    nat: {
      enable: option(
        t.bool,
        false,
        "Route and translate traffic from the internal interfaces and addresses out of the external interface.",
        "ip_forward=1 and NixOS's iptables chains (iptables-nft): nixos-nat-pre, nixos-nat-post, nixos-nat-out in the nat table and nixos-filter-forward in FORWARD, set up by /etc/vmrig/nat-start from the firewall's unit (nftables.service, also named firewall.service and nat.service) or, with the firewall off, from nat.service",
      ),
      internalInterfaces: option(t.listOf(t.str), [], "Interfaces whose traffic is translated (e.g. eth1)."),
      internalIPs: option(
        t.listOf(t.str),
        [],
        "Source addresses or ranges whose traffic is translated (e.g. 192.168.1.0/24).",
      ),
      externalInterface: option(t.nullOr(t.str), null, "The interface traffic leaves by (e.g. eth2)."),
      externalIP: option(
        t.nullOr(t.str),
        null,
        "The address outgoing traffic is translated to (SNAT) and the only one port forwards answer on; null: masquerade as the external interface's address.",
      ),
      forwardPorts: option(
        t.listOf(
          t.submodule({
            sourcePort: option(t.either(t.int, t.str), 0, 'Port on the external interface (a range: "60000:61000").'),
            destination: option(t.str, "", 'Where to forward to: "ip:port" (a range: "ip:start-end").'),
            proto: option(t.str, "tcp", "Protocol: tcp or udp."),
            loopbackIPs: option(
              t.listOf(t.str),
              [],
              "Public addresses for NAT reflection: connections to loopbackIP:sourcePort from the router itself and from the internal hosts are forwarded too.",
            ),
          }),
        ),
        [],
        "Ports forwarded from the external interface to internal machines (DNAT).",
      ),
      extraCommands: option(
        t.str,
        "",
        "Shell commands run after the NAT rules are set up (iptables ... nixos-nat-pre, ...).",
      ),
      extraStopCommands: option(t.str, "", "Shell commands run when the NAT rules are removed."),
    },
    firewall: {
      enable: option(t.bool, true, "Drop incoming traffic that no rule allows.", "nftables table inet vmrig-firewall"),
      allowedTCPPorts: option(t.listOf(t.int), [], "TCP ports open on every interface."),
      allowedUDPPorts: option(t.listOf(t.int), [], "UDP ports open on every interface."),
      allowPing: option(t.bool, true, "Answer ICMP echo requests."),
      allowedTCPPortRanges: option(t.listOf(portRange), [], "TCP port ranges open on every interface."),
      allowedUDPPortRanges: option(t.listOf(portRange), [], "UDP port ranges open on every interface."),
      trustedInterfaces: option(t.listOf(t.str), [], "Interfaces on which everything is accepted."),
      interfaces: option(
        t.attrsOf(
          t.submodule({
            allowedTCPPorts: option(t.listOf(t.int), [], "TCP ports open on this interface only."),
            allowedUDPPorts: option(t.listOf(t.int), [], "UDP ports open on this interface only."),
          }),
        ),
        {},
        "Per-interface openings.",
      ),
      extraInputRules: option(t.str, "", "nftables rules added to the input chain (before the default drop)."),
      filterForward: option(
        t.bool,
        false,
        "Filter forwarded traffic: drop all but replies, port forwards and what NAT sends out.",
        "a forward chain with policy drop in table inet vmrig-firewall (NixOS: the nftables firewall's)",
      ),
      extraForwardRules: option(t.str, "", "nftables rules added to the forward chain of filterForward."),
    },
  },
  services: serviceOptions,
  systemd: {
    tmpfiles: {
      rules: option(t.listOf(t.str), [], "tmpfiles.d(5) lines.", "/etc/tmpfiles.d/vmrig.conf"),
    },
    services: option(
      t.attrsOf(systemdService),
      {},
      "Units. A name that a package already ships is applied as a drop-in over it; otherwise a new unit.",
      "/etc/systemd/system/NAME.service or NAME.service.d/vmrig.conf",
    ),
    user: {
      services: option(
        t.attrsOf(systemdService),
        {},
        "User units: each user's systemd (started at login, and for lingering users) runs them; `wantedBy` is usually default.target. A name a package ships (GNOME's org.gnome.Shell@wayland) is applied as a drop-in over it.",
        "/etc/systemd/user/NAME.service or NAME.service.d/vmrig.conf; scripts in /etc/vmrig/units/user-NAME-*",
      ),
    },
  },
  boot: {
    kernel: {
      sysctl: option(
        t.attrsOf(t.either(t.str, t.int, t.bool)),
        {},
        "Kernel parameters.",
        "/etc/sysctl.d/90-vmrig.conf, applied by systemd-sysctl and before the network comes up",
      ),
    },
    kernelPackages: option(
      t.enum(["cloud", "full"]),
      "cloud",
      "The guest kernel, in Debian terms (NixOS: `boot.kernelPackages`). `cloud`: Debian's cloud kernel, the default for machines without a desktop; `full`: Debian's generic kernel, the default for graphical machines (`services.xserver.enable`).",
      "`cloud` is linux-image-cloud-amd64: it boots fastest but has no sound (`/dev/snd`), no DRM driver for the display adapter, no USB HID and few file systems and drivers beyond virtio. `full` is linux-image-amd64, installed in the node's package layer: sound, DRM (`bochs` for QEMU's VGA), input (evdev, virtio-input), every file system Debian builds; it costs a larger image and a slower first boot (see the README)",
    ),
    kernelParams: option(
      t.listOf(t.str),
      [],
      "Extra kernel command-line parameters.",
      "appended to QEMU's -append after vmrig's own (console, root, panic=1), so a later one wins where the kernel takes the last",
    ),
  },
  fileSystems: option(
    t.attrsOf(
      t.submodule({
        device: option(t.str, "", "What to mount (a device, `tmpfs`, a host:path, …)."),
        fsType: option(t.str, "auto", "File system type."),
        options: option(t.listOf(t.str), ["defaults"], "Mount options."),
      }),
    ),
    {},
    "Mounts by mount point.",
    "a native systemd .mount unit each, wanted by local-fs.target (vmrig masks the fstab generator for boot speed)",
  ),
  virtualisation: {
    memorySize: option(t.int, 1024, "Guest memory in MiB."),
    cores: option(t.int, 2, "vCPUs (1 on a one-core host). Under TCG two boot about 1.5× faster than one."),
    diskSize: option(t.int, 2048, "Root file system size in MiB (grown to fit the packages)."),
    graphics: option(
      t.bool,
      true,
      "NixOS semantics: whether interactive mode (`vmrig repl`) shows the display. Every VM has a display adapter either way, so screenshots always work.",
      "in `vmrig repl`, QEMU serves the display over VNC (the log says `watch it: vncviewer 127.0.0.1::PORT` at boot); `vmrig run` never shows one, `vmrig run --video` records it",
    ),
    resolution: {
      x: option(t.int, 1024, "Display width the adapter offers (EDID)."),
      y: option(t.int, 768, "Display height."),
    },
    forwardPorts: option(
      t.listOf(
        t.submodule({
          from: option(
            t.enum(["host", "guest"]),
            "host",
            "`host`: a host port reaches the guest; `guest`: an address the guest connects to reaches the host.",
          ),
          proto: option(t.enum(["tcp", "udp"]), "tcp", "Protocol."),
          host: {
            address: option(t.str, "127.0.0.1", "Host address."),
            port: option(t.int, 0, "Host port."),
          },
          guest: {
            address: option(
              t.str,
              "",
              'Guest address (for `from = "guest"`: the address the guest connects to, in 10.0.2.0/24).',
            ),
            port: option(t.int, 0, "Guest port."),
          },
        }),
      ),
      [],
      "Ports forwarded between host and guest, through a user-mode NIC (eth0, 10.0.2.15) that reaches nothing else.",
      "QEMU `-netdev user,restrict=on` with hostfwd, and guestfwd running `socat` per guest connection; eth0 is a trusted firewall interface",
    ),
    emptyDiskImages: option(
      t.listOf(t.int),
      [],
      "Sizes (MiB) of extra blank disks: /dev/vdb, /dev/vdc, …",
      "a qcow2 file per disk in the run's state directory, virtio-blk",
    ),
    vlans: option(t.listOf(t.int), [1], "Virtual networks the node joins, as eth1, eth2, …"),
    bootSnapshot: option(
      t.bool,
      true,
      "Restore the machine's saved first boot instead of booting it (SPEC §7). `false`: boot it every time.",
      "the first boot of a configuration runs with its vlan links down until systemd has finished; if it ends clean its memory, devices and disk are saved in the store and later starts restore them in well under a second. `vmrig run --no-snapshots` turns it off for a whole run",
    ),
    qemu: {
      options: option(t.listOf(t.str), [], "Extra QEMU arguments; each entry is split on whitespace."),
    },
  },
} as const;

export type NodeOptions = typeof nodeOptions;
