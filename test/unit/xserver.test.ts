import { describe, expect, it } from "vitest";
import { evalNodes, lib, type NodeModule } from "../../src/config/eval.js";
import { packagesOf } from "../../src/image/render.js";
import { errorOf, render, text } from "./fixtures.js";

const desktop: NodeModule = {
  users: { users: { alice: { isNormalUser: true } } },
  services: {
    xserver: {
      enable: true,
      displayManager: { autoLogin: { enable: true, user: "alice" } },
      windowManager: { icewm: { enable: true } },
      xkb: { layout: "de", options: "ctrl:nocaps" },
    },
  },
  virtualisation: { resolution: { x: 800, y: 600 } },
};

describe("services.xserver (SPEC §8)", () => {
  it("gives graphical machines Debian's full kernel, others the cloud kernel, and lets a node choose", () => {
    const c = evalNodes({ gui: desktop, text: {}, chosen: { ...desktop, boot: { kernelPackages: "cloud" } } });
    expect(c.gui!.boot.kernelPackages).toBe("full");
    expect(c.text!.boot.kernelPackages).toBe("cloud");
    expect(c.chosen!.boot.kernelPackages).toBe("cloud");
    expect(packagesOf(c.gui!)).toEqual(
      expect.arrayContaining(["linux-image-amd64", "xserver-xorg-core", "xserver-xorg-input-libinput", "icewm"]),
    );
    expect(packagesOf(c.gui!)).not.toContain("xserver-xorg-video-vesa");
    // on the cloud kernel there is no DRM driver: Xorg's VESA driver draws the screen
    expect(packagesOf(c.chosen!)).toContain("xserver-xorg-video-vesa");
    expect(packagesOf(c.chosen!)).not.toContain("linux-image-amd64");
    expect(packagesOf(c.text!)).toEqual([]);
  });

  it("renders X as root on :0 vt7, the session as the auto-login user, ready once IceWM holds the screen", () => {
    const p = render(desktop);
    const dm = text(p, "/usr/lib/vmrig/display-manager");
    expect(dm).toContain("/usr/lib/xorg/Xorg :0 vt7 -nolisten tcp");
    expect(dm).toContain("runuser -l alice");
    expect(dm).toMatch(/_NET_SUPPORTING_WM_CHECK[\s\S]*systemd-notify --ready/);
    expect(text(p, "/etc/vmrig/xsession")).toContain("exec icewm");
    const unit = text(p, "/etc/systemd/system/display-manager.service");
    expect(unit).toContain("Type=notify");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/graphical.target.wants/display-manager.service",
      target: "/etc/systemd/system/display-manager.service",
    });
    const conf = text(p, "/etc/X11/xorg.conf.d/10-vmrig.conf");
    expect(conf).toContain('Driver "modesetting"');
    expect(conf).toContain('Modes "800x600"');
    expect(conf).toContain('Option "XkbLayout" "de"');
    expect(conf).toContain('Option "XkbOptions" "ctrl:nocaps"');
    expect(text(p, "/etc/vmrig/backdoor.env")).toContain("export DISPLAY=:0");
  });

  it("runs the session as root without auto-login, and a machine without X has no DISPLAY", () => {
    const p = render({ services: { xserver: { enable: true } } });
    expect(text(p, "/usr/lib/vmrig/display-manager")).toContain("runuser -l root");
    expect(text(p, "/etc/vmrig/xsession")).toContain("exec sleep infinity");
    expect(text(render({}), "/etc/vmrig/backdoor.env")).not.toContain("DISPLAY");
  });

  it("catches a desktop that could never come up before anything is built", () => {
    expect(
      errorOf(() => render({ services: { xserver: { windowManager: { icewm: { enable: true } } } } })).message,
    ).toContain("services.xserver.enable is not");
    const noUser = errorOf(() =>
      render({ services: { xserver: { enable: true, displayManager: { autoLogin: { enable: true, user: "bob" } } } } }),
    );
    expect(noUser.message).toContain('autoLogin.user = "bob": no such user');
    expect(noUser.hint).toContain("users.users.bob");
    expect(
      errorOf(() =>
        render({ services: { xserver: { enable: true, displayManager: { autoLogin: { enable: true } } } } }),
      ).message,
    ).toContain("without a user");
  });

  it("is a configuration error in a container's module, naming the fix", () => {
    const e = errorOf(() => evalNodes({ ct: { services: { xserver: { enable: true } } } }, undefined, new Set(["ct"])));
    expect(e.message).toContain("sets services.xserver");
    expect(e.hint).toContain("declare ct under `nodes`");
  });

  const xserver = {
    enable: true,
    displayManager: { gdm: { enable: true }, autoLogin: { enable: true, user: "alice" } },
    desktopManager: { gnome: { enable: true } },
  };
  const gnome: NodeModule = {
    users: { users: { alice: { isNormalUser: true, uid: 1000 } } },
    services: { xserver },
    environment: { systemPackages: [lib.makeAutostartItem({ name: "firefox-esr", package: "firefox-esr" })] },
  };

  it("runs GNOME with GDM: auto-login, Wayland, ready once alice's gnome-shell has started", () => {
    const c = evalNodes({ m: gnome }).m!;
    expect(packagesOf(c)).toEqual(expect.arrayContaining(["gdm3", "gnome-shell", "dbus-user-session", "firefox-esr"]));
    expect(packagesOf(c)).not.toContain("icewm");
    const p = render(gnome);
    const conf = text(p, "/etc/gdm3/daemon.conf");
    expect(conf).toContain("WaylandEnable=true");
    expect(conf).toContain("AutomaticLoginEnable=true\nAutomaticLogin=alice");
    expect(text(p, "/usr/lib/vmrig/desktop-ready")).toContain(
      "systemctl --user is-active org.gnome.Shell@wayland.service",
    );
    expect(text(p, "/usr/lib/vmrig/gnome-eval")).toContain("runuser -u alice");
    expect(text(p, "/etc/systemd/system/vmrig-desktop-ready.service")).toContain("Before=graphical.target");
    expect(p.symlinks).toContainEqual({
      path: "/etc/systemd/system/display-manager.service",
      target: "/usr/lib/systemd/system/gdm.service",
    });
    expect(p.files.map((f) => f.path)).not.toContain("/usr/lib/vmrig/display-manager");
    // X clients reach the session's Xwayland
    expect(text(p, "/etc/vmrig/backdoor.env")).toContain("export XAUTHORITY=/run/vmrig/xauthority");
    // lib.makeAutostartItem: the package's own entry, started at login
    expect(text(p, "/etc/xdg/autostart/firefox-esr.desktop")).toContain("[Desktop Entry]");
    // NixOS's users.users.<name>.name
    expect(c.users.users.alice!.name).toBe("alice");
    const onXorg: NodeModule = {
      ...gnome,
      services: { xserver: { ...xserver, displayManager: { gdm: { enable: true, wayland: false } } } },
    };
    const x11 = render(onXorg);
    // GNOME on Xorg needs the X server and the session's entry, which GNOME only recommends
    const xorgPackages = ["xserver-xorg-core", "xserver-xorg-input-libinput", "gnome-session-xsession"];
    expect(packagesOf(evalNodes({ m: onXorg }).m!)).toEqual(expect.arrayContaining(xorgPackages));
    expect(packagesOf(c)).not.toContain("xserver-xorg-core");
    expect(text(x11, "/etc/gdm3/daemon.conf")).toContain("WaylandEnable=false");
    expect(text(x11, "/usr/lib/vmrig/desktop-ready")).toContain("org.gnome.Shell@x11.service");
    expect(text(x11, "/usr/lib/vmrig/desktop-ready")).toContain("runuser -u Debian-gdm");
  });

  it("catches a GNOME node that could never come up, and an autostart entry the package lacks", () => {
    const without = (change: object) =>
      errorOf(() => render({ ...gnome, services: { xserver: { ...xserver, ...change } } }));
    expect(without({ desktopManager: { gnome: { enable: false } } }).hint).toContain(
      "desktopManager.gnome.enable = true",
    );
    expect(without({ displayManager: { gdm: { enable: false } } }).hint).toContain("displayManager.gdm.enable = true");
    expect(without({ enable: false }).message).toContain("services.xserver.enable is not");
    expect(without({ windowManager: { icewm: { enable: true } } }).message).toContain("icewm.enable and GNOME");
    const entry = errorOf(() =>
      render({
        ...gnome,
        environment: { systemPackages: [lib.makeAutostartItem({ name: "firefox", package: "firefox-esr" })] },
      }),
    );
    expect(entry.message).toContain('package "firefox-esr" has no desktop entry "firefox"');
    expect(entry.hint).toContain("firefox-esr, org.gnome.Nautilus");
    expect(() => lib.makeAutostartItem({ name: "a b", package: "x" })).toThrow(/not a desktop entry's name/);
    expect(errorOf(() => render({ users: { users: { bob: { name: "robert" } } } })).hint).toContain(
      'users.users."robert"',
    );
  });
});
