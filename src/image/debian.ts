import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, ensureEntry, type StoreEntry } from "./store.js";
import { Interrupted, run } from "../util/proc.js";
import { VmrigError, configError } from "../util/errors.js";

/**
 * The documented base set: every image has these (SPEC §2), plus what vmrig
 * itself needs in the guest (busybox-static for the initrd, nftables for the
 * firewall, the cloud kernel).
 */
export const BASE_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "udev",
  "dbus",
  "iproute2",
  "iputils-ping",
  "procps",
  "netcat-openbsd",
  "curl",
  "kbd",
  "sudo",
  "login",
  // useradd, passwd, chpasswd, usermod: NixOS tests use them freely (Debian's `required`, not Essential)
  "passwd",
  // killall, fuser, pstree
  "psmisc",
  "nftables",
  "less",
  "ca-certificates",
  "e2fsprogs",
  "busybox-static",
  "linux-image-cloud-amd64",
] as const;

/** Docs and translations are not installed: smaller layers, faster dpkg. */
const DPKG_EXCLUDES = [
  "path-exclude=/usr/share/man/*",
  "path-exclude=/usr/share/info/*",
  "path-exclude=/usr/share/doc/*",
  "path-include=/usr/share/doc/*/copyright",
  "path-exclude=/usr/share/locale/*",
  "path-include=/usr/share/locale/locale.alias",
];

export interface Progress {
  (message: string): void;
}

const guestDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "guest");

/**
 * Every command vmrig runs in a chroot starts from this environment: the host's
 * (TMPDIR above all) names paths that do not exist there, and maintainer scripts
 * that call mktemp then fail.
 */
const CHROOT_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8"];

export interface BaseLayer extends StoreEntry {
  rootfs: string;
  kernel: string;
  initrd: string;
}

/** `boot.kernelPackages`: Debian's cloud kernel (in the base layer) or its full one (in a package layer). */
export type KernelFlavour = "cloud" | "full";

/**
 * Modules each kernel has only as modules but the initrd needs to mount the root disk
 * (dependencies come from modules.dep; a name that is built in is skipped). The full
 * kernel builds ext4 as a module, and ext4's checksums ask the crypto API for crc32c,
 * which modules.dep does not list.
 */
const INITRD_MODULES: Record<KernelFlavour, string[]> = {
  cloud: ["virtio_blk", "virtio_net"],
  full: ["virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "crc32c", "ext4"],
};

/** The kernel and initrd QEMU boots. */
export interface BootFiles {
  kernel: string;
  initrd: string;
}

/** The kernel directory in lib/modules of a flavour: `6.12.48+deb13-cloud-amd64` or `…-amd64`. */
function isFlavour(version: string, flavour: KernelFlavour): boolean {
  return flavour === "cloud" ? version.endsWith("-cloud-amd64") : /^[^-]*-amd64$/.test(version);
}

/**
 * The kernel of `flavour` in a layer, with vmrig's initrd for it: their own store entry,
 * so changing the initrd never re-runs mmdebstrap or apt.
 */
export async function bootFiles(
  layer: { rootfs: string; hash: string },
  flavour: KernelFlavour,
): Promise<BootFiles & StoreEntry> {
  const boot = await ensureEntry(
    "boot",
    {
      layer: "boot",
      base: layer.hash,
      flavour,
      init: fs.readFileSync(path.join(guestDir, "initrd-init"), "utf8"),
      modules: INITRD_MODULES[flavour],
    },
    (tmp) => makeBootFiles(layer.rootfs, tmp, flavour),
  );
  return { ...boot, kernel: path.join(boot.path, "vmlinuz"), initrd: path.join(boot.path, "initrd") };
}

export async function baseLayer(suite: string, mirror: string, progress: Progress): Promise<BaseLayer> {
  const inputs = {
    layer: "base",
    suite,
    mirror,
    packages: BASE_PACKAGES,
    dpkg: DPKG_EXCLUDES,
  };
  const entry = await ensureEntry(
    `base-${suite}`,
    inputs,
    async (tmp) => {
      const root = path.join(tmp, "root");
      progress(`building Debian ${suite} base layer (mmdebstrap, ~30-60 s, once)`);
      await run(
        "mmdebstrap",
        [
          "--variant=apt",
          "--mode=root",
          "--skip=cleanup/apt/lists",
          `--include=${BASE_PACKAGES.join(",")}`,
          ...DPKG_EXCLUDES.map((o) => `--dpkgopt=${o}`),
          suite,
          root,
          mirror,
        ],
        {
          onOutput: (chunk) => {
            const m = /^I: (.*)$/m.exec(chunk);
            if (m) progress(`  mmdebstrap: ${m[1]}`);
          },
          hint: `building the base image needs mmdebstrap and access to ${mirror}; run \`vmrig doctor\``,
          // its /proc, /sys and /dev mounts in the chroot stay private, and die with it
          isolate: true,
        },
      );
      const pkgnames = await run("chroot", [root, ...CHROOT_ENV, "apt-cache", "pkgnames"]);
      await fsp.writeFile(path.join(tmp, "pkgnames.txt"), pkgnames.stdout.split("\n").sort().join("\n"));
      // Debian's own initrd is not used: ours boots seconds faster.
      for (const f of await fsp.readdir(path.join(root, "boot"))) {
        if (f.startsWith("initrd.img-")) await fsp.rm(path.join(root, "boot", f));
      }
    },
    { what: `the Debian ${suite} base layer`, progress },
  );
  const rootfs = path.join(entry.path, "root");
  const boot = await bootFiles({ rootfs, hash: entry.hash }, "cloud");
  return { ...entry, rootfs, kernel: boot.kernel, initrd: boot.initrd };
}

async function makeBootFiles(root: string, out: string, flavour: KernelFlavour): Promise<void> {
  const all = await fsp.readdir(path.join(root, "lib/modules"));
  const versions = all.filter((v) => isFlavour(v, flavour));
  if (versions.length !== 1)
    throw new Error(
      `expected one ${flavour} kernel in the layer, found ${versions.join(", ") || "none"} (of ${all.join(", ")})`,
    );
  const kver = versions[0]!;
  await fsp.copyFile(path.join(root, "boot", `vmlinuz-${kver}`), path.join(out, "vmlinuz"));

  const modDir = path.join(root, "lib/modules", kver);
  const deps = parseModulesDep(await fsp.readFile(path.join(modDir, "modules.dep"), "utf8"));
  const order: string[] = [];
  const visit = (rel: string): void => {
    if (order.includes(rel)) return;
    for (const d of deps.get(rel) ?? []) visit(d);
    order.push(rel);
  };
  for (const name of INITRD_MODULES[flavour]) {
    const rel = [...deps.keys()].find((k) => path.basename(k).replace(/\.ko(\.xz|\.zst|\.gz)?$/, "") === name);
    if (rel) visit(rel); // absent means built in
  }

  const tree = path.join(out, "initrd.d");
  await fsp.mkdir(path.join(tree, "bin"), { recursive: true });
  await fsp.mkdir(path.join(tree, "modules"), { recursive: true });
  await fsp.copyFile(path.join(root, "bin/busybox"), path.join(tree, "bin/busybox"));
  await fsp.chmod(path.join(tree, "bin/busybox"), 0o755);
  await fsp.copyFile(path.join(guestDir, "initrd-init"), path.join(tree, "init"));
  await fsp.chmod(path.join(tree, "init"), 0o755);
  const names: string[] = [];
  for (const rel of order) {
    const base = path.basename(rel);
    const plain = base.replace(/\.(xz|zst|gz)$/, "");
    const src = path.join(modDir, rel);
    const dst = path.join(tree, "modules", plain);
    if (base.endsWith(".xz")) await run("sh", ["-c", 'xz -dc "$1" > "$2"', "sh", src, dst]);
    else if (base.endsWith(".zst")) await run("zstd", ["-dq", src, "-o", dst]);
    else await fsp.copyFile(src, dst);
    names.push(plain);
  }
  await fsp.writeFile(path.join(tree, "modules.order"), names.join("\n") + "\n");
  await run("sh", ["-c", "find . -print0 | sort -z | cpio --null -o -H newc --quiet > ../initrd"], { cwd: tree });
  await fsp.rm(tree, { recursive: true });
}

function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const [mod, rest] = line.split(":");
    if (!mod) continue;
    deps.set(mod, (rest ?? "").trim().split(/\s+/).filter(Boolean));
  }
  return deps;
}

/** Every package name the base layer's apt knows, to reject typos before building. */
export async function knownPackages(base: BaseLayer): Promise<Set<string>> {
  return new Set((await fsp.readFile(path.join(base.path, "pkgnames.txt"), "utf8")).split("\n"));
}

export function checkPackages(node: string, packages: Iterable<string>, known: Set<string>, suite: string): void {
  for (const p of packages) {
    if (!known.has(p)) {
      const close = [...known].filter((k) => k.startsWith(p) || p.startsWith(k)).slice(0, 3);
      throw configError(`node \`${node}\`: unknown Debian package \`${p}\` (not in ${suite})`, {
        hint: close.length
          ? `similar package names: ${close.join(", ")}`
          : `check the name with \`apt-cache search\` on a ${suite} system or on packages.debian.org`,
      });
    }
  }
}

export interface PackageLayer extends StoreEntry {
  rootfs: string;
}

/** Lines of apt's output that explain a failure, for the error report. */
const APT_ERRORS = /^(E: |W: |dpkg: |.*(error|failed|not found|cannot|No such)\b)/i;

/** Where a failed build's whole output is kept, for the user to read after the run. */
function buildLogPath(name: string): string {
  return path.join(cacheRoot(), "logs", `${new Date().toISOString().replace(/[:.]/g, "-")}-${name}.log`);
}

/**
 * Base plus the node's packages. Keyed by the sorted package set only, so nodes
 * with the same packages share it and config-only changes never re-run apt.
 */
export async function packageLayer(base: BaseLayer, packages: string[], progress: Progress): Promise<PackageLayer> {
  const inBase = new Set<string>(BASE_PACKAGES);
  const wanted = [...new Set(packages)].filter((p) => !inBase.has(p)).sort();
  if (wanted.length === 0) return { ...base, rootfs: base.rootfs };
  const entry = await ensureEntry(
    "packages",
    { layer: "packages", base: base.hash, packages: wanted },
    async (tmp) => {
      const root = path.join(tmp, "root");
      progress(`installing ${wanted.join(" ")} (apt, once per package set)`);
      // Isolated (util/proc.ts): the chroot's mounts are private and vanish with the shell.
      const script = `
        set -e
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        mount -t sysfs sysfs "$1/sys"
        cp /etc/resolv.conf "$1/etc/resolv.conf"
        printf '#!/bin/sh\\nexit 101\\n' > "$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"
        shift
        chroot "$ROOT" ${CHROOT_ENV.join(" ")} DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
        chroot "$ROOT" ${CHROOT_ENV.join(" ")} apt-get clean
        rm -f "$ROOT/usr/sbin/policy-rc.d"
        : > "$ROOT/etc/resolv.conf"
      `;
      // Once more from a clean copy if apt fails: a mirror or DNS hiccup must not fail a
      // test run (one cold CI run lost two package sets to a failure seen only once).
      for (let attempt = 1; ; attempt++) {
        fs.rmSync(root, { recursive: true, force: true });
        await run("cp", ["-a", "--reflink=auto", base.rootfs, root]);
        const log = buildLogPath(`apt-${wanted.slice(0, 3).join("-")}`);
        try {
          await run("sh", ["-c", script, "sh", root, ...wanted], {
            isolate: true,
            env: { ...process.env, ROOT: root },
            onOutput: (chunk) => {
              for (const m of chunk.matchAll(/^(Get:\d+ \S+ \S+ \S+ (\S+)|Setting up (\S+))/gm)) {
                progress(`  apt: ${m[2] ? `downloading ${m[2]}` : `setting up ${m[3]}`}`);
              }
            },
            hint: `apt could not install the packages; the output above says why; apt's whole output: ${log}`,
            explains: APT_ERRORS,
            failureLog: log,
          });
          return;
        } catch (e) {
          if (!(e instanceof VmrigError) || e instanceof Interrupted || attempt >= 2) throw e;
          const why = /^(E: |dpkg: error).*$/m.exec(e.output ?? "")?.[0] ?? e.summary;
          progress(`  apt failed (${why.trim()}); once more from a clean copy (apt's whole output: ${log})`);
        }
      }
    },
    { what: `the package layer (${wanted.join(" ")})`, progress },
  );
  return { ...entry, rootfs: path.join(entry.path, "root") };
}
