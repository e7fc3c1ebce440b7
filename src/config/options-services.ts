import { option, t } from "./dsl.js";

// services.*: one block per service module (image/services/), each rendered from these
// declarations. Split from options.ts only for length: nodeOptions.services is this.

const iniValue = t.either(t.str, t.int, t.bool);
/** A setting that may be given several times: NixOS's INI format with listsAsDuplicateKeys. */
const iniValues = t.either(t.str, t.int, t.bool, t.listOf(t.either(t.str, t.int)));

const phpfpmPool = t.submodule({
  user: option(t.str, "www-data", "User the pool's PHP processes run as (Debian's web user by default)."),
  group: option(t.str, "", "Their group (default: the user's primary group)."),
  socket: option(
    t.str,
    "",
    "Read-only: the pool's socket, /run/phpfpm/NAME.sock (as in NixOS) — point nginx's fastcgi_pass at it.",
  ),
  listen: option(t.str, "", "Where the pool listens (default: `socket`)."),
  settings: option(
    t.attrsOf(iniValue),
    {},
    "Pool directives (php-fpm.conf syntax: `key = value`, as NixOS writes them; booleans become yes/no, php-fpm has no repeated keys). vmrig fills in pm = dynamic with 5 children and a socket that www-data (nginx) may use, unless set here.",
  ),
  phpOptions: option(
    t.str,
    "",
    "php.ini lines (`key = value`) for this pool only.",
    "php_admin_value[key] in the pool file",
  ),
  phpEnv: option(
    t.attrsOf(t.str),
    {},
    "Environment variables of the pool's PHP processes.",
    "env[NAME] in the pool file",
  ),
});

const postgresqlUser = t.submodule({
  name: option(t.str, "", "Role name (created with LOGIN)."),
  ensureDBOwnership: option(
    t.bool,
    false,
    "Make the role own the database of the same name (which must be in ensureDatabases).",
  ),
  ensurePermissions: option(
    t.attrsOf(t.str),
    {},
    '{ "DATABASE db": "ALL PRIVILEGES" } — GRANT value ON key TO the role.',
  ),
  ensureClauses: {
    superuser: option(t.nullOr(t.bool), null, "SUPERUSER / NOSUPERUSER."),
    createrole: option(t.nullOr(t.bool), null, "CREATEROLE / NOCREATEROLE."),
    createdb: option(t.nullOr(t.bool), null, "CREATEDB / NOCREATEDB."),
    replication: option(t.nullOr(t.bool), null, "REPLICATION / NOREPLICATION."),
    login: option(t.nullOr(t.bool), null, "LOGIN / NOLOGIN."),
  },
});

export const serviceOptions = {
  vsftpd: {
    enable: option(
      t.bool,
      false,
      "Run the vsftpd FTP server.",
      "Debian package vsftpd; /etc/vsftpd.conf written whole",
    ),
    anonymousUser: option(t.bool, false, "Allow anonymous logins (user anonymous or ftp)."),
    anonymousUserHome: option(t.str, "/home/ftp/", "Where anonymous users land (made read-only, owned by root)."),
    anonymousUserNoPassword: option(t.bool, false, "Do not ask anonymous users for a password."),
    anonymousUploadEnable: option(t.bool, false, "Let anonymous users upload (needs writeEnable)."),
    anonymousMkdirEnable: option(t.bool, false, "Let anonymous users make directories (needs writeEnable)."),
    localUsers: option(t.bool, false, "Allow the machine's users to log in."),
    writeEnable: option(t.bool, false, "Allow commands that change the file system."),
    localRoot: option(t.nullOr(t.str), null, "Where local users land (vsftpd's local_root)."),
    chrootlocalUser: option(t.bool, false, "Keep local users inside their home (chroot_local_user)."),
    extraConfig: option(t.str, "", "vsftpd.conf lines appended (`key=value`)."),
  },
  nginx: {
    enable: option(t.bool, false, "Run nginx.", "Debian package nginx; sites written to /etc/nginx/sites-enabled/"),
    virtualHosts: option(
      t.attrsOf(
        t.submodule({
          root: option(t.nullOr(t.str), null, "Document root (default: Debian's /var/www/html)."),
          serverAliases: option(t.listOf(t.str), [], "More names this host answers to."),
          default: option(t.bool, false, "The default server of its addresses (default: the first virtual host)."),
          listen: option(
            t.listOf(
              t.submodule({
                addr: option(t.str, "", "Address (an IPv6 one in brackets: [::])."),
                port: option(t.int, 80, "Port."),
                extraParameters: option(t.listOf(t.str), [], "More words of the listen directive."),
              }),
            ),
            [],
            "Where it listens; empty: port 80 on every IPv4 and IPv6 address.",
          ),
          extraConfig: option(t.str, "", "Raw nginx directives in the server block."),
          locations: option(
            t.attrsOf(
              t.submodule({
                root: option(t.nullOr(t.str), null, "Document root of this location."),
                alias: option(t.nullOr(t.str), null, "Serve this path instead (nginx alias)."),
                index: option(t.nullOr(t.str), null, "Index file names (nginx index)."),
                tryFiles: option(t.nullOr(t.str), null, "nginx try_files."),
                return: option(t.nullOr(t.either(t.str, t.int)), null, "nginx return."),
                proxyPass: option(t.nullOr(t.str), null, "Upstream URL."),
                extraConfig: option(t.str, "", "Raw nginx directives."),
              }),
            ),
            {},
            "Locations.",
          ),
        }),
      ),
      {},
      "Virtual hosts by server name; the first one is also the default server.",
    ),
  },
  httpd: {
    enable: option(
      t.bool,
      false,
      "Run the Apache HTTP server.",
      "Debian package apache2; httpd.service is an alias of apache2.service; virtual hosts in /etc/apache2/sites-enabled/vmrig.conf",
    ),
    adminAddr: option(t.nullOr(t.str), null, "The server administrator's e-mail address (ServerAdmin)."),
    extraModules: option(
      t.listOf(t.str),
      [],
      'Apache modules to load beyond Debian\'s defaults, by name ("proxy", "proxy_http", "rewrite").',
      "links in /etc/apache2/mods-enabled/, as a2enmod makes them",
    ),
    extraConfig: option(
      t.str,
      "",
      "Lines added to the server's configuration.",
      "/etc/apache2/conf-enabled/vmrig.conf",
    ),
    virtualHosts: option(
      t.attrsOf(
        t.submodule({
          hostName: option(t.nullOr(t.str), null, "ServerName (default: the virtual host's name)."),
          serverAliases: option(t.listOf(t.str), [], "ServerAlias names."),
          adminAddr: option(t.nullOr(t.str), null, "ServerAdmin of this host (default: services.httpd.adminAddr)."),
          documentRoot: option(t.nullOr(t.str), null, "DocumentRoot (default: Debian's /var/www/html)."),
          listen: option(
            t.listOf(
              t.submodule({
                ip: option(t.str, "*", "Address (`*`: every address)."),
                port: option(t.int, 80, "TCP port."),
              }),
            ),
            [{ ip: "*", port: 80 }],
            "Where this host answers.",
          ),
          locations: option(
            t.attrsOf(
              t.submodule({
                alias: option(t.nullOr(t.str), null, "Serve this directory at the location (Alias)."),
                proxyPass: option(t.nullOr(t.str), null, "Upstream URL (ProxyPass; loads mod_proxy_http)."),
                index: option(t.nullOr(t.str), null, "DirectoryIndex."),
                extraConfig: option(t.str, "", "Raw directives inside the location's <Location> block."),
              }),
            ),
            {},
            "Locations by URL path.",
          ),
          extraConfig: option(t.str, "", "Raw directives inside the <VirtualHost> block."),
        }),
      ),
      {},
      "Virtual hosts by name; the first one answers requests for names no host claims. None: Debian's default site.",
    ),
  },
  postgresql: {
    enable: option(
      t.bool,
      false,
      "Run PostgreSQL.",
      "Debian's postgresql (the suite's major version), cluster `main`; postgresql.service is active once the cluster (postgresql@VER-main.service) has started and the SQL below has run",
    ),
    settings: option(
      t.freeform(t.either(t.str, t.int, t.bool, t.listOf(t.str)), {
        port: option(t.int, 5432, "TCP port (and the Unix socket's name)."),
      }),
      {},
      "postgresql.conf settings, e.g. { max_connections: 20, listen_addresses: \"*\" }. As in NixOS: strings are quoted, booleans are on/off, a list is one comma-separated string (`shared_preload_libraries = 'a,b'`).",
      "/etc/postgresql/VER/main/conf.d/90-vmrig.conf",
    ),
    enableTCPIP: option(t.bool, false, "Listen on every interface, not only localhost (listen_addresses = '*')."),
    authentication: option(
      t.str,
      "",
      "pg_hba.conf lines, checked before Debian's defaults (peer for local sockets, scram-sha-256 for localhost).",
      "prepended to /etc/postgresql/VER/main/pg_hba.conf",
    ),
    initialScript: option(
      t.nullOr(t.str),
      null,
      "SQL run once, as the superuser in database postgres, when the cluster first starts; an error fails the unit.",
    ),
    ensureDatabases: option(t.listOf(t.str), [], "Databases created on every start if missing."),
    ensureUsers: option(
      t.listOf(postgresqlUser),
      [],
      "Roles created on every start if missing, with their clauses and grants.",
    ),
  },
  phpfpm: {
    pools: option(
      t.attrsOf(phpfpmPool),
      {},
      "PHP FastCGI pools by name.",
      "Debian's php-fpm (one master, php8.x-fpm.service, also reachable as phpfpm-NAME.service as in NixOS); each pool is /etc/php/VER/fpm/pool.d/NAME.conf",
    ),
  },
  redis: {
    servers: option(
      t.attrsOf(
        t.submodule({
          enable: option(t.bool, false, "Run this Redis server."),
          port: option(
            t.int,
            0,
            'TCP port; 0 listens on none. vmrig sets 6379 for the server named "" (NixOS\'s default) unless a module says otherwise.',
          ),
          bind: option(t.nullOr(t.str), "127.0.0.1", "Addresses the TCP port listens on (null: all)."),
          unixSocket: option(
            t.str,
            "",
            'Its unix socket; vmrig sets /run/redis-NAME/redis.sock (/run/redis/redis.sock for "") unless a module says otherwise.',
          ),
          unixSocketPerm: option(t.int, 660, "The socket's permissions (octal digits)."),
          user: option(t.str, "", 'The account it runs as: redis-NAME (redis for ""), made for it.'),
          requirePass: option(t.nullOr(t.str), null, "The password clients must give."),
          databases: option(t.int, 16, "How many databases."),
          settings: option(
            t.attrsOf(t.either(t.str, t.int, t.bool, t.listOf(t.str))),
            {},
            "redis.conf settings; booleans become yes/no, lists repeat the key.",
          ),
        }),
      ),
      {},
      'Redis servers by name, each a unit of its own: redis-NAME.service (redis.service for the server named "").',
      "Debian's redis-server binary; Debian's own redis-server.service is masked; /etc/vmrig/redis/redis-NAME.conf; the server's group may use its socket",
    ),
  },
  keepalived: {
    enable: option(
      t.bool,
      false,
      "Run keepalived (VRRP: a virtual address that moves to another machine when its holder fails).",
      "Debian's keepalived, started 5 s after boot by keepalived-boot-delay.timer as in NixOS",
    ),
    openFirewall: option(t.bool, false, "Accept VRRP (IP protocol 112) in the firewall."),
    snmp: {
      enable: option(t.bool, false, "Start keepalived with its SNMP subsystem (`--snmp`).", "--snmp"),
    },
    extraGlobalDefs: option(t.str, "", "Lines added to the `global_defs` block."),
    extraConfig: option(t.str, "", "Lines added to the end of keepalived.conf."),
    vrrpInstances: option(
      t.attrsOf(
        t.submodule({
          interface: option(t.str, "", "The interface VRRP runs on (eth1, …)."),
          state: option(t.enum(["MASTER", "BACKUP"]), "BACKUP", "The state the instance starts in."),
          priority: option(t.int, 100, "The instance's priority: the highest one holds the addresses."),
          virtualRouterId: option(t.int, 0, "The VRRP router id (1–255), the same on every peer."),
          noPreempt: option(t.bool, false, "Do not take the addresses back from a lower priority master."),
          unicastPeers: option(t.listOf(t.str), [], "Peers to send adverts to directly instead of by multicast."),
          virtualIps: option(
            t.listOf(
              t.submodule({
                addr: option(t.str, "", "The address, with a prefix length or without (/32)."),
                dev: option(t.nullOr(t.str), null, "The interface (default: the instance's)."),
                scope: option(t.nullOr(t.str), null, "The address's scope."),
              }),
            ),
            [],
            "The virtual addresses the master holds.",
          ),
          extraConfig: option(t.str, "", "Lines added to the instance's block."),
        }),
      ),
      {},
      "VRRP instances by name.",
      "`vrrp_instance NAME { … }` in /etc/keepalived/keepalived.conf",
    ),
  },
  teeworlds: {
    enable: option(
      t.bool,
      false,
      "Run a Teeworlds game server.",
      "Debian's teeworlds-server as teeworlds.service (DynamicUser, as NixOS); /etc/teeworlds/teeworlds.cfg",
    ),
    openPorts: option(t.bool, false, "Open the server's UDP port in the firewall."),
    name: option(t.nullOr(t.str), null, "The server's name (`sv_name`)."),
    motd: option(t.nullOr(t.str), null, "The message of the day (`sv_motd`)."),
    password: option(t.nullOr(t.str), null, "The password players must give (`password`)."),
    rconPassword: option(t.nullOr(t.str), null, "The remote console's password (`sv_rcon_password`)."),
    port: option(t.int, 8303, "The UDP port (`sv_port`)."),
    extraOptions: option(t.listOf(t.str), [], "More lines for teeworlds.cfg."),
  },
  openarena: {
    enable: option(
      t.bool,
      false,
      "Run an OpenArena game server.",
      "Debian's openarena-server (ioquake3's dedicated server) as openarena.service (DynamicUser, as NixOS); Debian's own openarena-server.service is masked",
    ),
    openPorts: option(t.bool, false, "Open the server's UDP port (27960) in the firewall."),
    extraFlags: option(
      t.listOf(t.str),
      [],
      'Flags for the server, e.g. "+set dedicated 2", "+map oa_dm1" (a map is needed before clients can connect). Joined with spaces into ExecStart, so systemd\'s quoting applies, as in NixOS.',
    ),
  },
  nfs: {
    server: {
      enable: option(
        t.bool,
        false,
        "Run the kernel's NFS server.",
        "Debian's nfs-kernel-server, unit nfs-server.service (NixOS's name too)",
      ),
      exports: option(
        t.str,
        "",
        "The contents of /etc/exports: one exported directory per line, with its clients and options.",
        "/etc/exports",
      ),
      createMountPoints: option(t.bool, false, "Create each exported directory before the server starts."),
    },
    settings: option(
      t.attrsOf(t.attrsOf(t.either(t.str, t.int, t.bool))),
      {},
      'nfs.conf(5) sections for the NFS daemons and tools, e.g. { nfsd: { "grace-time": 10, "lease-time": 10 } } (a test need not wait out the 90 s grace period after a server restart). Booleans are written true/false.',
      "/etc/nfs.conf.d/vmrig.conf",
    ),
  },
  openssh: {
    enable: option(
      t.bool,
      false,
      "Run the SSH server.",
      "Debian's openssh-server, unit ssh.service (alias sshd.service)",
    ),
    ports: option(t.listOf(t.int), [22], "Ports sshd listens on."),
    listenAddresses: option(
      t.listOf(
        t.submodule({
          addr: option(t.str, "", "An address to listen on."),
          port: option(t.nullOr(t.int), null, "Its port (default: each of `ports`)."),
        }),
      ),
      [],
      "Addresses sshd listens on (default: all).",
      "ListenAddress lines",
    ),
    extraConfig: option(t.str, "", "Lines appended to sshd's configuration."),
    openFirewall: option(t.bool, true, "Open `ports` in the firewall."),
    settings: option(
      t.freeform(t.either(t.str, t.int, t.bool, t.listOf(t.str)), {
        PermitRootLogin: option(t.str, "prohibit-password", "Whether root may log in."),
        PasswordAuthentication: option(t.bool, true, "Allow password logins."),
        KbdInteractiveAuthentication: option(t.bool, true, "Allow keyboard-interactive logins."),
      }),
      {},
      "sshd_config settings; booleans become yes/no, lists repeat the key.",
      "/etc/ssh/sshd_config.d/90-vmrig.conf; each boot makes its own ed25519 host key (not shared between nodes)",
    ),
  },
  xserver: {
    enable: option(
      t.bool,
      false,
      "An X11 session on display :0 (vt7), for screenshots, keys, OCR and windows (SPEC §8).",
      "Debian's Xorg (xserver-xorg-core with the libinput input driver) run as root by display-manager.service, which is ready once the session (and its window manager) holds the screen; the session runs as the auto-login user, root otherwise. Key autorepeat is off (`xset r off`). Backdoor commands have DISPLAY=:0. The node boots Debian's full kernel unless `boot.kernelPackages` says otherwise (its DRM driver for QEMU's VGA, `bochs`, drives the screen; on the cloud kernel Xorg's `vesa` driver does)",
    ),
    displayManager: {
      gdm: {
        enable: option(
          t.bool,
          false,
          "GDM as the display manager (with `desktopManager.gnome`: GNOME, on Wayland by default).",
          "Debian's gdm3 as display-manager.service; auto-login through /etc/gdm3/daemon.conf. The boot (and its snapshot) ends once the gnome-shell of the auto-login user (of GDM's greeter without auto-login) has started. A test machine's session: no screen blanking, no animations, no file indexer, the desktop rather than the overview at login. Backdoor commands get DISPLAY=:0 and the session's XAUTHORITY, so X clients reach Xwayland",
        ),
        wayland: option(
          t.bool,
          true,
          "Run the session on Wayland (false: on Xorg, with Debian's xserver-xorg-core and gnome-session-xsession; gnome-shell then runs as org.gnome.Shell@x11).",
        ),
      },
      autoLogin: {
        enable: option(t.bool, false, "Log `user` in on the X display at boot."),
        user: option(t.nullOr(t.str), null, "The account the X session runs as (it must exist: `users.users`)."),
      },
      sessionCommands: option(
        t.str,
        "",
        "Shell commands run in the session before the window manager starts (as the session's user, DISPLAY set).",
        "/etc/vmrig/xsession, a sh script run with the user's login environment (`runuser -l`)",
      ),
    },
    desktopManager: {
      gnome: {
        enable: option(
          t.bool,
          false,
          "The GNOME desktop (needs `displayManager.gdm`).",
          "Debian's gnome-session and gnome-shell, drawn by Mesa's llvmpipe when there is no GPU (under TCG: expect a slow first frame, paid once by the boot snapshot); Xwayland for X clients",
        ),
      },
    },
    windowManager: {
      icewm: {
        enable: option(
          t.bool,
          false,
          "Run IceWM in the session (it gives newly mapped windows the focus).",
          "Debian's icewm; the display manager is ready once IceWM has claimed the screen (_NET_SUPPORTING_WM_CHECK)",
        ),
      },
    },
    xkb: {
      layout: option(t.str, "us", "Keyboard layout(s) of the X server (comma-separated)."),
      variant: option(t.str, "", "Layout variant(s)."),
      options: option(t.str, "", "XKB options, e.g. `ctrl:nocaps`."),
    },
  },
  getty: {
    autoLoginUser: option(
      t.nullOr(t.str),
      null,
      "Log this user in on every virtual terminal and the serial console.",
      "drop-ins for getty@ and serial-getty@ (agetty --autologin)",
    ),
  },
  mysql: {
    enable: option(
      t.bool,
      false,
      "Run MariaDB (Debian's MySQL).",
      "package mariadb-server, unit mariadb.service (alias mysql.service)",
    ),
    settings: option(
      t.attrsOf(t.attrsOf(iniValues)),
      {},
      'my.cnf sections, e.g. { mysqld: { "bind-address": "0.0.0.0" } }. As in NixOS: a list repeats the key once per element (`binlog-ignore-db = a`, `binlog-ignore-db = b`), `true` writes the bare key, `false` writes `key = false`.',
      "/etc/mysql/mariadb.conf.d/90-vmrig.cnf",
    ),
    initialScript: option(t.nullOr(t.str), null, "SQL run once, as root, when the server first starts."),
    initialDatabases: option(
      t.listOf(
        t.submodule({
          name: option(t.str, "", "Database name."),
          schema: option(t.nullOr(t.str), null, "SQL run in it once."),
        }),
      ),
      [],
      "Databases created on first start, with an optional schema.",
    ),
    ensureDatabases: option(t.listOf(t.str), [], "Databases that must exist."),
    ensureUsers: option(
      t.listOf(
        t.submodule({
          name: option(t.str, "", "User name; authenticated by the unix socket (the system user of the same name)."),
          ensurePermissions: option(t.attrsOf(t.str), {}, '{ "db.*": "ALL PRIVILEGES" }'),
        }),
      ),
      [],
      "Users that must exist, with their grants.",
    ),
    replication: {
      role: option(t.enum(["none", "master", "slave"]), "none", "Replication role."),
      serverId: option(t.int, 1, "server-id of this server."),
      masterHost: option(t.str, "", "The primary's host name (for a slave)."),
      masterUser: option(t.str, "", "Replication user."),
      masterPassword: option(t.str, "", "Replication user's password."),
      masterPort: option(t.int, 3306, "The primary's port."),
      slaveHost: option(t.str, "%", "Host the replication user may connect from (for a master)."),
    },
  },
} as const;
