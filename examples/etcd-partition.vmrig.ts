// SPEC §10: a three-member etcd cluster (Debian's etcd-server) rides out a partition.
// The leader is cut off from the other two; they elect a new leader and keep taking
// writes; after heal() the old leader has caught up. Then a client VM whose link loses
// 30 % of its packets still gets every write through. The members are containers (fast;
// etcd needs no kernel of its own), the client is a VM: its loss is the guest kernel's
// netem, and a container shares the host's kernel, which may have none.
import { defineTest, type NodeModule } from "vmrig";

const members = ["e1", "e2", "e3"] as const;
const endpoints = members.map((m) => `http://${m}:2379`).join(",");

const member = (name: string): NodeModule => ({
  networking: { firewall: { allowedTCPPorts: [2379, 2380] } },
  environment: {
    systemPackages: ["etcd-server", "etcd-client"],
    etc: {
      "default/etcd": {
        text: [
          `ETCD_NAME=${name}`,
          "ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380",
          "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379",
          `ETCD_INITIAL_ADVERTISE_PEER_URLS=http://${name}:2380`,
          `ETCD_ADVERTISE_CLIENT_URLS=http://${name}:2379`,
          `ETCD_INITIAL_CLUSTER=${members.map((m) => `${m}=http://${m}:2380`).join(",")}`,
          "ETCD_INITIAL_CLUSTER_STATE=new",
          "ETCD_INITIAL_CLUSTER_TOKEN=vmrig",
          // elections in well under a second: a partition is noticed fast
          "ETCD_HEARTBEAT_INTERVAL=100",
          "ETCD_ELECTION_TIMEOUT=1000",
          "",
        ].join("\n"),
      },
    },
  },
});

/** What one member says of itself: its id and the leader's. */
interface Status {
  Status: { header: { member_id: number }; leader: number };
}

export default defineTest({
  name: "etcd-partition",
  containers: { e1: member("e1"), e2: member("e2"), e3: member("e3") },
  nodes: { client: { environment: { systemPackages: ["etcd-client"] } } },
  async testScript({ e1, e2, e3, client, startAll, partition, heal, subtest, retry }) {
    const all = { e1, e2, e3 };
    const etcdctl = (args: string) => `etcdctl --command-timeout=3s ${args}`;
    const status = async (m: typeof e1): Promise<Status["Status"]> =>
      (
        JSON.parse(await m.succeed(etcdctl("--endpoints=http://localhost:2379 endpoint status -w json"))) as Status[]
      )[0]!.Status;

    await startAll();
    await Promise.all(Object.values(all).map((m) => m.waitForUnit("etcd.service")));
    await e1.waitUntilSucceeds(etcdctl(`--endpoints=${endpoints} endpoint health`), 120);
    await e1.succeed(etcdctl("put key before-partition"));

    let leaderName = "";
    let leaderId = 0;
    await retry(async () => {
      for (const [name, m] of Object.entries(all)) {
        const s = await status(m);
        if (s.leader !== 0 && s.leader === s.header.member_id) [leaderName, leaderId] = [name, s.leader];
      }
      return leaderName !== "";
    }, 60);
    const leader = all[leaderName as keyof typeof all];
    const rest = Object.entries(all).filter(([n]) => n !== leaderName);
    leader.log(`the leader; cutting it off from ${rest.map(([n]) => n).join(" and ")}`);

    await subtest("the majority elects a new leader and keeps taking writes", async () => {
      await partition(
        [leader],
        rest.map(([, m]) => m),
      );
      const [, follower] = rest[0]!;
      await retry(async () => {
        const s = await status(follower).catch(() => undefined);
        return s !== undefined && s.leader !== 0 && s.leader !== leaderId;
      }, 60);
      await follower.waitUntilSucceeds(etcdctl("put key during-partition"), 60);
      // the cut-off leader cannot commit anything: a write there times out
      await leader.fail(etcdctl("--endpoints=http://localhost:2379 put key lost"));
    });

    await subtest("after heal() the old leader has the majority's writes", async () => {
      await heal();
      await leader.waitUntilSucceeds(
        `${etcdctl("--endpoints=http://localhost:2379 get key --print-value-only")} | grep -x during-partition`,
        60,
      );
    });

    await subtest("a client on a link that loses 30 % of its packets gets every write through", async () => {
      await client.netem({ loss: 30 });
      // TCP's retransmissions do the work; etcdctl gets time for them. gRPC sets the socket's
      // TCP_USER_TIMEOUT to its keepalive timeout (etcdctl's default: 6 s), and a segment lost
      // four times running outlasts that: the soak saw "read: connection timed out" once in 20
      const lossy = (args: string) =>
        `etcdctl --dial-timeout=15s --command-timeout=30s --keepalive-time=10s --keepalive-timeout=30s --endpoints=${endpoints} ${args}`;
      for (let i = 0; i < 10; i++) await client.succeed(lossy(`put lossy-${i} v${i}`));
      const got = await client.succeed(lossy("get lossy- --prefix --print-value-only"));
      await client.netem(null);
      if (got.trim().split("\n").length !== 10) throw new Error(`expected 10 values, got:\n${got}`);
    });
  },
});
