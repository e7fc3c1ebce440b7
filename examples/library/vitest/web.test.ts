// Two tests over one topology: the machines start once for the file, a checkpoint is taken,
// and every test after the first starts from it again (about a second under emulation).
import { test as base, expect } from "vitest";
import { withMachines } from "vmrig/vitest";
import { web } from "../machines.js";

const test = withMachines(base, web, { name: "vitest-web" });

test("the client reaches nginx on the server", async ({ machines: { server, client } }) => {
  await server.waitForUnit("nginx.service");
  expect(await client.succeed("curl -sf http://server/")).toContain("Welcome to nginx!");
  // a change the next test must not see
  await server.succeed("systemctl stop nginx");
  await client.fail("curl -sf http://server/");
});

test("each test starts from the file's checkpoint", async ({ machines: { server, client } }) => {
  // nginx runs again: the stop above was undone by the restore
  expect((await server.succeed("systemctl is-active nginx")).trim()).toBe("active");
  await client.succeed("curl -sf http://server/");
});
