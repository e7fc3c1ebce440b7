// What the unit tests of configuration and rendering share.
import { expect } from "vitest";
import { evalNodes, type NodeModule } from "../../src/config/eval.js";
import { renderNode, templateOf, type Patch, type TreeInfo } from "../../src/image/render.js";
import { VmrigError } from "../../src/util/errors.js";

/** A package layer as render.ts sees it: a few accounts, units and versioned directories. */
export const tree: TreeInfo = {
  passwd: "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
  group: "root:x:0:\nshadow:x:42:\nusers:x:100:\nwww-data:x:33:\n",
  shadow: "root:*:19000:0:99999:7:::\nwww-data:*:19000:0:99999:7:::\n",
  hasUnit: (u, user) =>
    user
      ? templateOf(u) === "org.gnome.Shell@.service"
      : ["nginx.service", "mariadb.service", "nftables.service"].includes(u),
  listDir: (p) =>
    ({
      "/etc/postgresql": ["17"],
      "/etc/php": ["8.4"],
      "/etc/php/8.4/fpm": ["pool.d"],
      "/etc/pam.d": ["login", "sshd", "su"],
      "/etc/apache2/mods-available": ["headers.load", "proxy.load", "proxy.conf", "proxy_http.load"],
      "/usr/share/applications": ["firefox-esr.desktop", "org.gnome.Nautilus.desktop", "mimeinfo.cache"],
    })[p] ?? [],
  readFile: (p) =>
    p === "/usr/lib/systemd/user/org.gnome.Shell@.service"
      ? "[Service]\nType=notify\nExecStart=/usr/bin/gnome-shell\n"
      : p.endsWith("pg_hba.conf")
        ? "local all postgres peer\n"
        : p.startsWith("/etc/pam.d/")
          ? "@include common-auth\n@include common-session\n"
          : p.endsWith(".desktop")
            ? `[Desktop Entry]\nName=${p}\nExec=app\n`
            : "",
  readSource: (p) => Buffer.from(`contents of ${p}`),
  hashPassword: (pw, salt) => `$6$${salt}$hash-of-${pw}`,
};

/** One node evaluated and rendered against `tree`. */
export function render(module: NodeModule, name = "m"): Patch {
  const configs = evalNodes({ [name]: module });
  return renderNode(name, configs[name]!, [{ name, ipv4: "192.168.1.1", ipv6: "2001:db8:1::1" }], tree);
}

export const fileOf = (p: Patch, path: string) => {
  const f = p.files.find((x) => x.path === path);
  if (!f) throw new Error(`${path} not rendered`);
  return f;
};
export const text = (p: Patch, path: string) => fileOf(p, path).content.toString();

/** The VmrigError `fn` throws. */
export function errorOf(fn: () => unknown): VmrigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VmrigError);
    return e as VmrigError;
  }
  throw new Error("expected an error");
}
