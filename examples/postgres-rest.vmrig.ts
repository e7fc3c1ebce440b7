// The seeds' PostgreSQL + PostgREST test ("How to use NixOS for lightweight integration
// tests", nix.dev): a server with PostgreSQL and a REST view of a table, a client that
// queries it with curl, the JSON compared in the script.
//
// PostgREST is not packaged in Debian. The server runs postgres-rest/rest.py instead:
// Python 3 and psycopg2 from Debian, reading the same tutorial.conf, serving the same
// GET /todos as the same anonymous role. Everything else is the seed, option for option.
import { deepStrictEqual } from "node:assert/strict";
import { defineTest, type NodeModule } from "vmrig";

// Single source of truth for all tutorial constants
const database = "postgres";
const schema = "api";
const table = "todos";
const username = "authenticator";
const password = "mysecretpassword";
const webRole = "web_anon";
const postgrestPort = 3000;

// Module shared between server and client
const sharedModule: NodeModule = {
  // Since it's common for CI not to have $DISPLAY available, explicitly disable graphics support
  virtualisation: { graphics: false },
};

export default defineTest({
  name: "postgres-test",
  nodes: {
    server: ({ config }) => ({
      imports: [sharedModule],
      networking: { firewall: { allowedTCPPorts: [postgrestPort] } },
      services: {
        postgresql: {
          enable: true,
          initialScript: `
            create schema ${schema};

            create table ${schema}.${table} (
                id serial primary key,
                done boolean not null default false,
                task text not null,
                due timestamptz
            );

            insert into ${schema}.${table} (task) values ('finish tutorial 0'), ('pat self on back');

            create role ${webRole} nologin;
            grant usage on schema ${schema} to ${webRole};
            grant select on ${schema}.${table} to ${webRole};

            create role ${username} inherit login password '${password}';
            grant ${webRole} to ${username};
          `,
        },
      },
      users: {
        mutableUsers: false,
        users: {
          // For ease of debugging the VM as the `root` user
          root: { password: "" },
          // Create a system user that matches the database user so that you
          // can use peer authentication. The tutorial defines a password,
          // but it's not necessary.
          [username]: { isSystemUser: true },
        },
      },
      environment: {
        systemPackages: ["python3", "python3-psycopg2"],
        etc: {
          "postgrest/rest.py": { source: "postgres-rest/rest.py" },
          "postgrest/tutorial.conf": {
            text: [
              `db-uri = "postgres://${username}:${password}@localhost:${config.services.postgresql.settings.port}/${database}"`,
              `db-schema = "${schema}"`,
              `db-anon-role = "${username}"`,
              `server-port = ${postgrestPort}`,
            ].join("\n"),
          },
        },
      },
      systemd: {
        services: {
          postgrest: {
            wantedBy: ["multi-user.target"],
            after: ["postgresql.service"],
            script: "exec python3 /etc/postgrest/rest.py /etc/postgrest/tutorial.conf",
            serviceConfig: { User: username },
          },
        },
      },
    }),
    client: { imports: [sharedModule] },
  },
  // Disable linting for simpler debugging of the testScript
  skipLint: true,

  async testScript({ server, client, startAll }) {
    await startAll();
    await server.waitForOpenPort(postgrestPort);

    const expected = [
      { id: 1, done: false, task: "finish tutorial 0", due: null },
      { id: 2, done: false, task: "pat self on back", due: null },
    ];
    const actual: unknown = JSON.parse(await client.succeed(`curl http://server:${postgrestPort}/${table}`));
    deepStrictEqual(actual, expected, "table query returns expected content");
  },
});
