// The seeds' MySQL replication test (nixos/tests/mysql/mysql-replication.nix),
// on Debian's MariaDB: a primary and two replicas; stop a replica, write more
// on the primary, start the replica again, and it catches up.
import { defineTest, type NodeModule } from "vmrig";

const replicateUser = "replicate";
const replicatePassword = "secret";

const testdb = `
create table tests ( Id INT(11) NOT NULL AUTO_INCREMENT, Name VARCHAR(255) NOT NULL, PRIMARY KEY(Id) );
insert into tests values (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e');
`;

const replica =
  (serverId: number): NodeModule<"primary" | "secondary1" | "secondary2"> =>
  ({ nodes }) => ({
    networking: { firewall: { allowedTCPPorts: [3306] } },
    services: {
      mysql: {
        enable: true,
        replication: {
          role: "slave",
          serverId,
          masterHost: nodes.primary.config.networking.hostName,
          masterUser: replicateUser,
          masterPassword: replicatePassword,
        },
      },
    },
  });

export default defineTest({
  name: "mysql-replication",
  nodes: {
    primary: {
      networking: { firewall: { allowedTCPPorts: [3306] } },
      services: {
        mysql: {
          enable: true,
          replication: {
            role: "master",
            slaveHost: "%",
            masterUser: replicateUser,
            masterPassword: replicatePassword,
            serverId: 1,
          },
          initialDatabases: [{ name: "testdb", schema: testdb }],
          // a list repeats the key, as NixOS's INI format writes it
          settings: { mysqld: { "binlog-ignore-db": ["scratch1", "scratch2"] } },
        },
      },
    },
    secondary1: replica(2),
    secondary2: replica(3),
  },
  async testScript({ primary, secondary1, secondary2 }) {
    const count = "sudo -u mysql mysql -u mysql -N -e 'select count(id) from testdb.tests'";

    await primary.start();
    await primary.waitForUnit("mysql");
    await primary.waitForOpenPort(3306);
    // Wait for testdb to be fully populated (5 rows).
    await primary.waitUntilSucceeds(`${count} | grep -q 5`);
    // both list entries reached MariaDB
    await primary.succeed("sudo -u mysql mysql -u mysql -N -e 'show master status' | grep -q 'scratch1,scratch2'");

    await Promise.all([secondary1.start(), secondary2.start()]);
    for (const s of [secondary1, secondary2]) {
      await s.waitForUnit("mysql");
      await s.waitForOpenPort(3306);
      await s.waitUntilSucceeds(`${count} | grep -q 5`);
    }

    // Take down the second replica, write to the primary, bring the replica back.
    await secondary2.succeed("systemctl stop mysql");
    await primary.succeed("echo 'insert into testdb.tests values (123, 456);' | sudo -u mysql mysql -u mysql -N");
    await secondary2.succeed("systemctl start mysql");
    await secondary2.waitForUnit("mysql");
    await secondary2.waitForOpenPort(3306);
    await secondary2.waitUntilSucceeds(
      "sudo -u mysql mysql -u mysql -N -e 'select * from testdb.tests where Id = 123;' | grep 456",
    );
    await secondary1.waitUntilSucceeds(
      "sudo -u mysql mysql -u mysql -N -e 'select * from testdb.tests where Id = 123;' | grep 456",
    );
  },
});
