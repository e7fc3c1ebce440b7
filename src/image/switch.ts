import { createHash } from "node:crypto";
import { TOPLEVEL, type EvaluatedConfig } from "../config/eval.js";
import { configError } from "../util/errors.js";
import { file, unit, type FileOp, type Patch } from "./patch.js";

/**
 * Specialisations in the guest (SPEC §2). Every configuration of a node (its own and each
 * specialisation's) is rendered to a patch; the image holds the node's, applied, and a
 * manifest of each: the files, links and folders it makes, with their contents in one
 * folder by hash. `switch-to-configuration` (guest/switch-to-configuration) compares the
 * running configuration's manifest with the target's, applies the difference and stops,
 * starts, restarts or reloads the units whose files changed, as NixOS's does.
 *
 * Only nodes that have specialisations get any of this: other images stay byte for byte
 * what they were, and so do their boot snapshots.
 */

/** Where every configuration's file contents live, by sha256. */
export const SWITCH_FILES = "/usr/lib/vmrig/switch/files";
/** The switch itself; each configuration's bin/switch-to-configuration calls it with its folder. */
export const SWITCH_SCRIPT = "/usr/lib/vmrig/switch-to-configuration";

/**
 * Units of vmrig's own modules whose configuration is a file in /etc rather than part of
 * the unit (NixOS puts it in the store, so the unit changes with it): a drop-in carries a
 * hash of those files, so the unit changes when they do: as a restart trigger, or a reload
 * trigger (a change of that file alone reloads the unit, NixOS's reloadTriggers), and
 * `reloadIfChanged` where NixOS sets it (its firewall).
 */
const CONFIG_FILES: {
  unit: string;
  prefixes: string[];
  on: "reload" | "restart";
  reloadIfChanged?: boolean;
  /** only where vmrig writes the unit itself (elsewhere the name is an alias of another unit) */
  ownUnit?: boolean;
}[] = [
  {
    unit: "nftables.service",
    prefixes: ["/etc/nftables.conf", "/etc/vmrig/nat-"],
    on: "reload",
    reloadIfChanged: true,
  },
  { unit: "nat.service", prefixes: ["/etc/vmrig/nat-"], on: "restart", ownUnit: true },
  { unit: "nginx.service", prefixes: ["/etc/nginx/"], on: "restart" },
  { unit: "nfs-server.service", prefixes: ["/etc/exports"], on: "restart" },
  { unit: "keepalived.service", prefixes: ["/etc/keepalived/"], on: "reload" },
  { unit: "vsftpd.service", prefixes: ["/etc/vsftpd.conf"], on: "restart" },
];

function sha(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Add the drop-ins that make units change with their configuration files (switchable nodes only). */
export function addConfigTriggers(patch: Patch): void {
  for (const c of CONFIG_FILES) {
    const files = patch.files
      .filter((f) => c.prefixes.some((p) => f.path.startsWith(p)))
      .sort((a, b) => a.path.localeCompare(b.path));
    if (!files.length) continue;
    if (c.ownUnit && !patch.files.some((f) => f.path === `/etc/systemd/system/${c.unit}`)) continue;
    const digest = sha(files.map((f) => `${f.path}\0${sha(f.content)}`).join("\n")).slice(0, 16);
    patch.files.push(
      file(
        `/etc/systemd/system/${c.unit}.d/vmrig-switch.conf`,
        unit({
          Unit: {
            "X-ReloadIfChanged": c.reloadIfChanged,
            [c.on === "reload" ? "X-Reload-Triggers" : "X-Restart-Triggers"]: digest,
          },
        }),
      ),
    );
  }
}

/** user and group name → id, from /etc/passwd or /etc/group text */
export function idMap(text: string): Map<string, number> {
  return new Map(
    text
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const f = l.split(":");
        return [f[0]!, Number(f[2])] as const;
      }),
  );
}

/** One configuration's manifest: tab-separated lines the switch script reads. */
function manifest(patch: Patch, where: string): { text: string; contents: FileOp[] } {
  const content = (p: string) => patch.files.find((f) => f.path === p)?.content.toString() ?? "";
  const uids = idMap(content("/etc/passwd"));
  const gids = idMap(content("/etc/group"));
  const id = (map: Map<string, number>, name: string, what: string, p: string) => {
    const v = map.get(name);
    if (v === undefined) throw configError(`${where}: ${p}: ${what} \`${name}\` does not exist in the image`);
    return v;
  };
  const lines: string[] = [];
  const contents: FileOp[] = [];
  for (const d of patch.dirs)
    lines.push(
      ["d", d.mode.toString(8), id(uids, d.owner, "user", d.path), id(gids, d.group, "group", d.path), d.path].join(
        "\t",
      ),
    );
  for (const f of patch.files) {
    const hash = sha(f.content);
    contents.push(file(`${SWITCH_FILES}/${hash}`, f.content, 0o600));
    lines.push(
      [
        "f",
        f.mode.toString(8),
        id(uids, f.owner, "user", f.path),
        id(gids, f.group, "group", f.path),
        hash,
        f.path,
      ].join("\t"),
    );
  }
  for (const l of patch.symlinks) lines.push(["l", l.target, l.path].join("\t"));
  for (const r of patch.removes) lines.push(["r", r].join("\t"));
  for (const line of lines)
    if (/[\n]/.test(line) || line.split("\t").some((f) => f === ""))
      throw configError(`${where}: a path with a newline or an empty name cannot be switched: ${JSON.stringify(line)}`);
  return { text: lines.join("\n") + "\n", contents };
}

/**
 * The files that make a node switchable, added to its own patch: each configuration's
 * folder (manifest, bin/switch-to-configuration) and every file content once.
 */
export function systemFiles(
  name: string,
  base: Patch,
  specialisations: Record<string, Patch>,
  switchScript: Buffer,
): FileOp[] {
  const out: FileOp[] = [
    file(SWITCH_SCRIPT, switchScript, 0o755),
    // NixOS's names for the configuration the machine booted and the one it runs now
    file(
      "/etc/tmpfiles.d/vmrig-system.conf",
      `L /run/booted-system - - - - ${TOPLEVEL}\nL /run/current-system - - - - ${TOPLEVEL}\n`,
    ),
  ];
  const seen = new Set<string>();
  const add = (dir: string, patch: Patch, where: string) => {
    const m = manifest(patch, where);
    out.push(
      file(`${dir}/manifest`, m.text),
      file(`${dir}/bin/switch-to-configuration`, `#!/bin/sh\nexec ${SWITCH_SCRIPT} ${dir} "$@"\n`, 0o755),
    );
    for (const c of m.contents) if (!seen.has(c.path) && seen.add(c.path)) out.push(c);
  };
  add(TOPLEVEL, base, `nodes.${name}`);
  for (const [spec, patch] of Object.entries(specialisations))
    add(`${TOPLEVEL}/specialisation/${spec}`, patch, `nodes.${name}.specialisation.${spec}`);
  return out;
}

/** A unit a package's maintainer script enabled in the package layer: a `.wants` link in /etc. */
export interface PackagedEnable {
  path: string;
  target: string;
  pkg: string;
}

/**
 * The units that the packages of a switchable node enabled when apt installed them. The
 * image holds the packages of every configuration, so a unit that only a specialisation
 * enables (nginx) must not run in the others: each configuration keeps the links of the
 * packages it installs itself (with their dependencies: nginx's unit is nginx-common's),
 * in its manifest, and removes the rest.
 */
export function packagedEnables(tree: { listDir(p: string): string[]; readFile(p: string): string }): PackagedEnable[] {
  const owner = new Map<string, string>();
  for (const list of tree.listDir("/var/lib/dpkg/info")) {
    if (!list.endsWith(".list")) continue;
    const pkg = list.slice(0, -".list".length).replace(/:amd64$/, "");
    for (const f of tree.readFile(`/var/lib/dpkg/info/${list}`).split("\n"))
      if (/^(\/usr)?\/lib\/systemd\/system\/[^/]+$/.test(f)) owner.set(f.split("/").pop()!, pkg);
  }
  const out: PackagedEnable[] = [];
  for (const dir of tree.listDir("/etc/systemd/system")) {
    if (!/\.(wants|requires)$/.test(dir)) continue;
    for (const u of tree.listDir(`/etc/systemd/system/${dir}`)) {
      const pkg = owner.get(u);
      if (pkg) out.push({ path: `/etc/systemd/system/${dir}/${u}`, target: `/usr/lib/systemd/system/${u}`, pkg });
    }
  }
  return out;
}

/**
 * Installed packages that `roots` need (Depends, Pre-Depends; virtual names resolved),
 * from dpkg's status; `all`: every installed package.
 */
export function dependencyClosure(status: string, roots: Iterable<string>, all = false): Set<string> {
  const deps = new Map<string, string[][]>();
  const provides = new Map<string, string[]>();
  for (const stanza of status.split(/\n\n+/)) {
    const field = (k: string) =>
      new RegExp(`^${k}: (.*(?:\\n .*)*)`, "m").exec(stanza)?.[1]?.replace(/\n /g, " ") ?? "";
    const pkg = field("Package");
    if (!pkg || !/installed$/.test(field("Status"))) continue;
    const names = (v: string) =>
      v
        .split(",")
        .map((alt) => alt.split("|").map((x) => x.trim().split(/[\s(:]/)[0]!))
        .filter((a) => a[0]);
    deps.set(pkg, [...names(field("Depends")), ...names(field("Pre-Depends"))]);
    for (const [v] of names(field("Provides"))) provides.set(v!, [...(provides.get(v!) ?? []), pkg]);
  }
  const out = new Set<string>();
  const visit = (name: string) => {
    for (const p of deps.has(name) ? [name] : (provides.get(name) ?? [])) {
      if (out.has(p)) continue;
      out.add(p);
      for (const alts of deps.get(p) ?? []) {
        const installed = alts.find((a) => deps.has(a) || provides.has(a));
        if (installed) visit(installed);
      }
    }
  };
  for (const r of all ? deps.keys() : roots) visit(r);
  return out;
}

/** Keep the enables of `own` packages in a configuration's patch (so its manifest has them), remove the others. */
export function pinPackagedEnables(patch: Patch, enables: PackagedEnable[], own: ReadonlySet<string>): void {
  for (const e of enables) {
    if (patch.symlinks.some((l) => l.path === e.path)) continue;
    if (own.has(e.pkg)) patch.symlinks.push({ path: e.path, target: e.target });
    else patch.removes.push(e.path);
  }
}

/** The specialisations' configurations of a node, by name. */
export function specialisationsOf(config: EvaluatedConfig): Record<string, EvaluatedConfig> {
  return Object.fromEntries(Object.entries(config.specialisation).map(([n, s]) => [n, s.configuration]));
}
