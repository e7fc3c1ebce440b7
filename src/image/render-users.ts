import type { EvaluatedConfig } from "../config/eval.js";
import { configError } from "../util/errors.js";
import { file, type Patch } from "./patch.js";
import type { TreeInfo } from "./render.js";

// users.*: passwd, group and shadow written from the evaluated config and the package layer's accounts.

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

export function renderUsers(config: EvaluatedConfig, tree: TreeInfo, patch: Patch): void {
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
    if (u.name && u.name !== name)
      throw configError(
        `users.users.${name}.name = ${JSON.stringify(u.name)}: an account is named by its attribute here`,
        {
          hint: `declare it as users.users.${JSON.stringify(u.name)} instead`,
        },
      );
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
      (u.hashedPasswordFile !== null
        ? (
            tree.readSource(u.hashedPasswordFile, `users.users.${name}.hashedPasswordFile`).toString().split("\n")[0] ??
            ""
          ).trim()
        : undefined) ??
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
    name: "root",
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
    hashedPasswordFile: null,
    packages: [],
    openssh: { authorizedKeys: { keys: [] } },
  };
}
