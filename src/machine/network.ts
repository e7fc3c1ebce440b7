import net from "node:net";
import { DEFAULT_TIMEOUT, quote, shown, type MachineCore } from "./core.js";
import { waitFor } from "./waiting.js";
import { Container } from "../vm/nspawn.js";
import type { QemuVm } from "../vm/qemu.js";
import { HOST_NIC } from "../vm/qemu-args.js";
import { errorMessage } from "../util/errors.js";
import { shellQuote } from "../util/proc.js";

export async function setLinks(m: MachineCore, up: boolean): Promise<void> {
  const g = await m.up();
  await g.setLinks(up);
  m.log.log(up ? "unblocked (links up)" : "blocked (links down)", m.name);
  m.log.mark("fault", up ? "unblocked" : "blocked", m.name);
}

/**
 * Host TCP `hostPort` (on 127.0.0.1) to `guestPort`; given only the guest port, a free host
 * port. Resolves to the host port. A VM gets a user-mode NIC (eth0) that reaches nothing
 * but lets the host in, and the guest's firewall trusts it.
 */
export async function forwardPort(
  m: MachineCore,
  location: string | undefined,
  ...ports: [guestPort: number] | [hostPort: number, guestPort: number]
): Promise<number> {
  const [asked, guestPort] = ports.length === 1 ? [0, ports[0]] : ports;
  const call = ports.length === 1 ? `forwardPort(${guestPort})` : `forwardPort(${asked}, ${guestPort})`;
  for (const p of ports)
    if (!Number.isInteger(p) || p < 1 || p > 65535)
      throw m.fail(`${p} is not a TCP port`, call, { location, hint: "ports are whole numbers from 1 to 65535" });
  const g = await m.up();
  if (g instanceof Container) {
    return m.nested(`forwarding host port ${asked || "(any free one)"} to container port ${guestPort}`, () =>
      g.forwardPort(asked, guestPort).catch((e: unknown) => {
        throw m.fail(`could not listen on host port ${asked}: ${errorMessage(e)}`, call, {
          location,
          hint: "is the host port already in use?",
        });
      }),
    );
  }
  const vm = await m.qemu(call, location);
  // QEMU cannot say which port it bound for port 0: a free one is found first (another
  // process may take it in between, so a refusal of a port we picked is tried again)
  for (let attempt = 1; ; attempt++) {
    const hostPort = asked || (await freeHostPort());
    try {
      await hostForward(m, vm, hostPort, guestPort, call, location);
      return hostPort;
    } catch (e) {
      if (asked || attempt >= 3) throw e;
    }
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on just now. */
function freeHostPort(): Promise<number> {
  // bounded: a listen on 127.0.0.1 answers at once
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function hostForward(
  m: MachineCore,
  vm: QemuVm,
  hostPort: number,
  guestPort: number,
  call: string,
  location: string | undefined,
): Promise<void> {
  await m.nested(`forwarding host port ${hostPort} to guest port ${guestPort}`, async () => {
    if (!m.hostNic && !vm.spec.forwardPorts?.length) {
      await vm.qmp.execute("netdev_add", { type: "user", id: HOST_NIC.id, restrict: true, net: HOST_NIC.net });
      await vm.qmp.execute("device_add", {
        driver: "virtio-net-pci",
        netdev: HOST_NIC.id,
        id: `${HOST_NIC.id}-nic`,
        mac: HOST_NIC.mac,
      });
      const cmd =
        `n=; for i in $(seq 100); do n=$(grep -l ${HOST_NIC.mac} /sys/class/net/*/address | cut -d/ -f5 || true); [ -n "$n" ] && break; sleep 0.1; done; ` +
        '[ -n "$n" ] || { echo "the hot-plugged NIC did not appear" >&2; exit 1; }; ' +
        `[ "$n" = eth0 ] || ip link set "$n" name eth0; ip link set eth0 up; ip addr replace ${HOST_NIC.guestAddress}/24 dev eth0; ` +
        "(nft list table inet vmrig-firewall >/dev/null 2>&1 && nft insert rule inet vmrig-firewall input iifname eth0 accept) || true";
      const r = await m.run(cmd, call, location, 60);
      if (r.status !== 0)
        throw m.fail("could not set up the host-forwarding NIC", call, {
          command: cmd,
          status: r.status,
          output: shown(r),
          location,
        });
      m.hostNic = true;
    }
    const out = await vm.qmp.hmp(
      `hostfwd_add ${HOST_NIC.id} tcp:127.0.0.1:${hostPort}-${HOST_NIC.guestAddress}:${guestPort}`,
    );
    if (out.trim())
      throw m.fail(`QEMU refused the forward: ${out.trim()}`, call, {
        location,
        hint: "is the host port already in use?",
      });
  });
}

export function waitForPort(
  m: MachineCore,
  location: string | undefined,
  port: number,
  addr: string,
  open: boolean,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const call = `${open ? "waitForOpenPort" : "waitForClosedPort"}(${port}${addr !== "localhost" ? `, ${quote(addr)}` : ""})`;
  return waitFor(
    m,
    {
      call,
      heading: `waiting for TCP port ${port} on ${addr} to ${open ? "open" : "close"}`,
      what: `port ${port} to ${open ? "open" : "close"}`,
      timeout,
      location,
    },
    async () => {
      const r = await m.run(`nc -z -w 2 ${shellQuote(addr)} ${port}`, call, location, 60);
      return {
        done: (r.status === 0) === open,
        last: `port ${port} on ${addr} is ${r.status === 0 ? "open" : "closed"}`,
      };
    },
  );
}

export function waitForOpenUnixSocket(
  m: MachineCore,
  location: string | undefined,
  socketPath: string,
  timeout = DEFAULT_TIMEOUT,
): Promise<void> {
  const call = `waitForOpenUnixSocket(${quote(socketPath)})`;
  return waitFor(
    m,
    {
      call,
      heading: `waiting for unix socket ${socketPath}`,
      what: `${socketPath} to accept connections`,
      timeout,
      location,
    },
    async () => {
      const r = await m.run(`nc -U -z ${shellQuote(socketPath)}`, call, location, 60);
      return { done: r.status === 0, last: `${socketPath} does not accept connections` };
    },
  );
}
