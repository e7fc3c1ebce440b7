// The seeds' graphical tests (issue #27): time from start() to the program's first window,
// first boot (boot snapshots off) and restored (from the boot snapshot of the logged-in
// desktop), for each browser and game. Numbers and ratios in one run, no assertions.
//   node bench/first-window.bench.mjs [--restores N] [--only firefox|chromium|teeworlds|openarena|gnome-firefox]
// The desktop is the examples' (IceWM, alice logged in); each program is started as alice,
// as examples/firefox.vmrig.ts and examples/nixos/chromium.vmrig.ts do (the games' examples
// run them as root, in a root session: the same X server and the same renderer, llvmpipe).
import os from "node:os";
import { cleanup, desktopNode, median, rowPrinter, s, topology } from "./lib.mjs";

const args = process.argv.slice(2);
const restores = Number(args[args.indexOf("--restores") + 1] || 2) || 2;
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const row = rowPrinter(60, 12);

const programs = {
  firefox: { pkgs: ["firefox-esr"], cmd: "firefox-esr about:blank", window: /Firefox|Mozilla/ },
  chromium: { pkgs: ["chromium"], cmd: "chromium --use-gl=swiftshader about:blank", window: /Chromium/ },
  teeworlds: { pkgs: ["teeworlds", "libgl1-mesa-dri"], cmd: "/usr/games/teeworlds", window: /Teeworlds/ },
  openarena: {
    pkgs: ["openarena", "libgl1-mesa-dri"],
    cmd: "/usr/games/openarena +set r_fullscreen 0 +set r_mode 0 +set s_initsound 0",
    window: /ioquake3/,
  },
  // on Wayland: the window is found through gnome-shell (waitForWindow asks its Eval)
  "gnome-firefox": {
    pkgs: ["firefox-esr"],
    gnome: true,
    env: "WAYLAND_DISPLAY=wayland-0 XDG_RUNTIME_DIR=/run/user/1000",
    cmd: "firefox-esr about:blank",
    window: /Firefox|Mozilla/,
  },
};

/** GNOME on Wayland (examples/gnome-wayland.vmrig.ts): alice logged in by GDM, the shell in unsafe mode. */
const gnomeNode = (pkgs) => ({
  services: {
    xserver: {
      enable: true,
      displayManager: { gdm: { enable: true }, autoLogin: { enable: true, user: "alice" } },
      desktopManager: { gnome: { enable: true } },
    },
  },
  users: { users: { alice: { isNormalUser: true, uid: 1000 } } },
  environment: { systemPackages: pkgs },
  systemd: {
    user: {
      services: {
        "org.gnome.Shell@wayland": { serviceConfig: { ExecStart: ["", "/usr/bin/gnome-shell --unsafe-mode"] } },
      },
    },
  },
  virtualisation: { memorySize: 3072 },
});

const desktop = (pkgs, gnome) => ({
  machine: gnome
    ? gnomeNode(pkgs)
    : desktopNode({
        virtualisation: { memorySize: 2047 },
        environment: { systemPackages: [...pkgs, "xdotool"] },
      }),
});

/** start() → the program's first window; also when the desktop was up (waitForX). */
async function firstWindow(name, b, snapshots) {
  const t = await topology({ name: `bench-${name}`, nodes: desktop(b.pkgs, b.gnome) }, snapshots);
  try {
    const m = t.machines[0];
    const t0 = performance.now();
    await m.start();
    await m.waitForX();
    const x = performance.now() - t0;
    await m.succeed(`su - alice -c '${b.env ?? "DISPLAY=:0"} ${b.cmd} >/dev/null 2>&1 &'`);
    await m.waitForWindow(b.window, 600);
    return { total: performance.now() - t0, x, origin: m.origin };
  } finally {
    await t.close();
  }
}

try {
  console.log(`host: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
  for (const [name, b] of Object.entries(programs)) {
    if (only && only !== name) continue;
    await firstWindow(name, b, true); // builds the image and saves the boot snapshot if missing
    const cold = await firstWindow(name, b, false);
    const warm = [];
    for (let i = 0; i < restores; i++) warm.push(await firstWindow(name, b, true));
    const w = median(warm.map((r) => r.total));
    row(`${name}: first boot → first window (no snapshot)`, s(cold.total));
    row(`  of which boot → waitForX`, s(cold.x));
    row(`${name}: restore → first window (median of ${restores})`, s(w));
    row(`  of which restore → waitForX`, s(median(warm.map((r) => r.x))));
    row(`  ratio first boot / restore`, `${(cold.total / w).toFixed(1)}×`);
    console.log(`  all restores: ${warm.map((r) => s(r.total)).join(", ")}; origin: ${warm[0].origin}`);
  }
} finally {
  cleanup();
}
