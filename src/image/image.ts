import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { debianPackages, type EvaluatedConfig } from "../config/eval.js";
import {
  baseLayer,
  bootFiles,
  checkPackages,
  knownPackages,
  packageLayer,
  type BaseLayer,
  type Progress,
} from "./debian.js";
import {
  renderNode,
  ownPackages,
  packagesOf,
  templateOf,
  type HostEntry,
  type Patch,
  type TreeInfo,
} from "./render.js";
import { ensureEntry } from "./store.js";
import {
  dependencyClosure,
  idMap,
  packagedEnables,
  pinPackagedEnables,
  specialisationsOf,
  systemFiles,
} from "./switch.js";
import { run } from "../util/proc.js";
import { configError } from "../util/errors.js";

/** `disk`: a raw ext4 file system for a VM; `tree`: a directory, a container's root (SPEC §9). */
export type ImageFormat = "disk" | "tree";

export interface NodeImage {
  name: string;
  format: ImageFormat;
  /** read-only, in the store: the raw ext4 root file system each VM gets a qcow2 overlay on, or the tree under each container's overlay */
  root: string;
  kernel: string;
  initrd: string;
  /** content hash of everything in the image, for result caching */
  hash: string;
  /** every store entry the image needs (base, boot, packages, the image): what `vmrig gc` keeps for it */
  entries: string[];
}

const guestDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "guest");

/**
 * Check every node's input against Debian before anything node-specific is
 * built: an unknown package is a configuration error (exit 2).
 */
export async function prepareBases(
  configs: Record<string, EvaluatedConfig>,
  progress: Progress,
): Promise<Map<string, BaseLayer>> {
  const bases = new Map<string, BaseLayer>();
  for (const [name, config] of Object.entries(configs)) {
    const key = `${config.debian.suite} ${config.debian.mirror}`;
    let base = bases.get(key);
    if (!base) bases.set(key, (base = await baseLayer(config.debian.suite, config.debian.mirror, progress)));
    checkPackages(name, packagesOf(config), await knownPackages(base), config.debian.suite);
  }
  return bases;
}

export async function buildNodeImage(
  name: string,
  config: EvaluatedConfig,
  hosts: HostEntry[],
  base: BaseLayer,
  opts: { progress: Progress; sourceDir: string; format?: ImageFormat },
): Promise<NodeImage> {
  const format = opts.format ?? "disk";
  const { progress } = opts;
  const pkgs = await packageLayer(base, packagesOf(config), progress);
  // the cloud kernel is the base layer's; the full one was installed with the node's packages
  const boot = config.boot.kernelPackages === "cloud" ? base : await bootFiles(pkgs, "full");
  const tree = treeInfo(pkgs.rootfs, opts.sourceDir);
  const specs = specialisationsOf(config);
  const switchable = Object.keys(specs).length > 0;
  const patch = renderNode(name, config, hosts, tree, switchable);
  if (switchable) {
    // what the base layer has is every configuration's: only the packages layer's enables move
    const inBase = dependencyClosure(
      await fsp.readFile(path.join(base.rootfs, "var/lib/dpkg/status"), "utf8"),
      [],
      true,
    );
    const enables = packagedEnables(tree).filter((e) => !inBase.has(e.pkg));
    const status = tree.readFile("/var/lib/dpkg/status");
    pinPackagedEnables(patch, enables, dependencyClosure(status, ownPackages(config)));
    const specPatches = Object.fromEntries(
      Object.entries(specs).map(([n, c]) => {
        const p = renderNode(name, c, hosts, tree, true);
        pinPackagedEnables(p, enables, dependencyClosure(status, ownPackages(c)));
        return [n, p];
      }),
    );
    const script = await fsp.readFile(path.join(guestDir, "switch-to-configuration"));
    patch.files.push(...systemFiles(name, patch, specPatches, script));
  }
  const backdoor = await fsp.readFile(path.join(guestDir, "backdoor"));
  const init = await fsp.readFile(path.join(guestDir, "init"));
  const assemble = async (work: string) => {
    await run("cp", ["-al", pkgs.rootfs, work]);
    patch.files.push(
      { path: "/usr/lib/vmrig/backdoor", content: backdoor, mode: 0o755, owner: "root", group: "root" },
      { path: "/usr/lib/vmrig/init", content: init, mode: 0o755, owner: "root", group: "root" },
    );
    await applyPatch(work, patch, config);
  };
  // A VM's image and a container's tree are the same files: one patch, two store entries.
  const entry = await ensureEntry(
    `${format === "disk" ? "image" : "tree"}-${name}`,
    {
      layer: format === "disk" ? "image" : "tree",
      packages: pkgs.hash,
      patch: patchDigest(patch),
      backdoor: sha(backdoor),
      init: sha(init),
      diskSize: config.virtualisation.diskSize,
      systemPackages: config.environment.systemPackages,
    },
    async (tmp) => {
      if (format === "tree") {
        progress(`assembling ${name}'s container tree`);
        await assemble(path.join(tmp, "root"));
        return;
      }
      progress(`assembling ${name}'s disk image`);
      const work = path.join(tmp, "tree");
      await assemble(work);
      const usedMiB = Number((await run("du", ["-sm", "--apparent-size", work])).stdout.split(/\s/)[0]);
      const sizeMiB = Math.max(config.virtualisation.diskSize, Math.ceil(usedMiB * 1.3 + 256));
      await run("mkfs.ext4", ["-q", "-F", "-L", "vmrig-root", "-d", work, path.join(tmp, "root.img"), `${sizeMiB}M`], {
        hint: "mkfs.ext4 needs e2fsprogs ≥ 1.43 (`-d`)",
      });
      await fsp.rm(work, { recursive: true, force: true });
    },
    { what: format === "disk" ? `${name}'s disk image` : `${name}'s container tree`, progress },
  );
  const entries = [
    ...new Set([base.path, path.dirname(base.kernel), path.dirname(boot.kernel), pkgs.path, entry.path]),
  ];
  return {
    name,
    format,
    root: path.join(entry.path, format === "disk" ? "root.img" : "root"),
    kernel: boot.kernel,
    initrd: boot.initrd,
    hash: entry.hash,
    entries,
  };
}

function sha(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function patchDigest(patch: Patch): unknown {
  return { ...patch, files: patch.files.map((f) => ({ ...f, content: sha(f.content) })) };
}

function treeInfo(rootfs: string, sourceDir: string): TreeInfo {
  const read = (p: string) => fs.readFileSync(path.join(rootfs, p), "utf8");
  return {
    passwd: read("etc/passwd"),
    group: read("etc/group"),
    shadow: read("etc/shadow"),
    listDir: (p) => {
      try {
        return fs.readdirSync(path.join(rootfs, p)).sort();
      } catch {
        return [];
      }
    },
    readFile: (p) => read(p),
    hasUnit: (unit, user) =>
      (user ? ["usr/lib/systemd/user"] : ["usr/lib/systemd/system", "lib/systemd/system"]).some((d) =>
        // an instance (org.gnome.Shell@wayland.service) is shipped as its template
        [unit, templateOf(unit)].some((u) => fs.existsSync(path.join(rootfs, d, u))),
      ),
    readSource: (p, what) => {
      const abs = path.resolve(sourceDir, p);
      try {
        return fs.readFileSync(abs);
      } catch (e) {
        throw configError(`${what}: ${abs} cannot be read: ${(e as Error).message}`, {
          hint: "a relative path is taken from the test file's folder",
        });
      }
    },
    hashPassword: (password, salt) =>
      execFileSync(
        "openssl",
        ["passwd", "-6", "-salt", createHash("sha256").update(salt).digest("hex").slice(0, 16), "-stdin"],
        { input: password, timeout: 10_000 },
      )
        .toString()
        .trim(),
  };
}

/**
 * Apply a patch to a hardlink copy of a store layer. Every write replaces the
 * directory entry (unlink, then create) so the store's inodes are never touched.
 */
async function applyPatch(work: string, patch: Patch, config: EvaluatedConfig): Promise<void> {
  const at = (p: string) => path.join(work, p);
  const replace = async (p: string) => {
    await fsp.mkdir(path.dirname(at(p)), { recursive: true });
    await fsp.rm(at(p), { force: true, recursive: false }).catch(() => undefined);
  };
  for (const r of patch.removes) await fsp.rm(at(r), { force: true });
  // Account databases first: owners below are resolved against them.
  const passwdOp = patch.files.find((f) => f.path === "/etc/passwd")!;
  const groupOp = patch.files.find((f) => f.path === "/etc/group")!;
  const uids = idMap(passwdOp.content.toString());
  const gids = idMap(groupOp.content.toString());
  const uid = (n: string, where: string) => {
    const id = uids.get(n);
    if (id === undefined) throw configError(`${where}: user \`${n}\` does not exist in the image`);
    return id;
  };
  const gid = (n: string, where: string) => {
    const id = gids.get(n);
    if (id === undefined) throw configError(`${where}: group \`${n}\` does not exist in the image`);
    return id;
  };
  for (const f of patch.files) {
    await replace(f.path);
    await fsp.writeFile(at(f.path), f.content, { mode: f.mode });
    await fsp.chmod(at(f.path), f.mode);
    await fsp.chown(at(f.path), uid(f.owner, f.path), gid(f.group, f.path));
  }
  for (const l of patch.symlinks) {
    await replace(l.path);
    await fsp.symlink(l.target, at(l.path));
  }
  for (const d of patch.dirs) {
    const fresh = !fs.existsSync(at(d.path));
    await fsp.mkdir(at(d.path), { recursive: true, mode: d.mode });
    const u = uid(d.owner, d.path);
    const g = gid(d.group, d.path);
    await fsp.chown(at(d.path), u, g);
    await fsp.chmod(at(d.path), d.mode);
    if (fresh) {
      // like useradd -m: the skeleton files, owned by the user
      for (const e of await fsp.readdir(at("/etc/skel")).catch(() => [] as string[])) {
        await fsp.cp(at(`/etc/skel/${e}`), at(`${d.path}/${e}`), { recursive: true });
        await run("chown", ["-R", `${u}:${g}`, at(`${d.path}/${e}`)]);
      }
    }
  }
  await relocatePerUser(work, patch.perUserPackages, new Set(debianPackages(config.environment.systemPackages)));
}

const BIN_DIRS = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/games"];

/** `users.users.X.packages`: the package's programs leave the global PATH and appear in X's. */
async function relocatePerUser(
  work: string,
  perUser: Record<string, string[]>,
  systemWide: Set<string>,
): Promise<void> {
  const moved = new Map<string, string[]>();
  for (const [user, pkgs] of Object.entries(perUser)) {
    const binDir = `/etc/profiles/per-user/${user}/bin`;
    await fsp.mkdir(path.join(work, binDir), { recursive: true });
    for (const pkg of pkgs) {
      let programs = moved.get(pkg);
      if (!programs) {
        programs = systemWide.has(pkg) ? await listPrograms(work, pkg) : await moveOutOfPath(work, pkg);
        moved.set(pkg, programs);
      }
      for (const prog of programs) {
        const link = path.join(work, binDir, path.basename(prog));
        await fsp.rm(link, { force: true });
        await fsp.symlink(prog, link);
      }
    }
  }
}

async function dpkgList(work: string, pkg: string): Promise<string[]> {
  for (const name of [`${pkg}.list`, `${pkg}:amd64.list`]) {
    const p = path.join(work, "var/lib/dpkg/info", name);
    if (fs.existsSync(p)) return (await fsp.readFile(p, "utf8")).split("\n").filter(Boolean);
  }
  return [];
}

async function listPrograms(work: string, pkg: string): Promise<string[]> {
  const files = await dpkgList(work, pkg);
  return files.filter((f) => BIN_DIRS.includes(path.dirname(f))).map((f) => f.replace(/^\/(s?bin)\//, "/usr/$1/"));
}

async function moveOutOfPath(work: string, pkg: string): Promise<string[]> {
  const out: string[] = [];
  for (const prog of new Set(await listPrograms(work, pkg))) {
    const src = path.join(work, prog);
    let st: fs.Stats;
    try {
      st = await fsp.lstat(src);
    } catch {
      continue;
    }
    const dest = `/usr/lib/vmrig/per-user/${pkg}/${path.basename(prog)}`;
    await fsp.mkdir(path.dirname(path.join(work, dest)), { recursive: true });
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(src);
      await fsp.symlink(
        path.isAbsolute(target) ? target : path.join(path.dirname(prog), target),
        path.join(work, dest),
      );
      await fsp.rm(src);
    } else {
      await fsp.rename(src, path.join(work, dest));
    }
    out.push(dest);
  }
  return out;
}
