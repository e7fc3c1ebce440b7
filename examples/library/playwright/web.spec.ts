import { expect, test } from "./fixtures.js";

test("the client reaches nginx on the server", async ({ machines: { server, client } }) => {
  await server.waitForUnit("nginx.service");
  expect(await client.succeed("curl -sf http://server/")).toContain("Welcome to nginx!");
});

test("the server's journal shows nginx started", async ({ machines: { server } }) => {
  expect(await server.succeed("journalctl -u nginx --no-pager")).toMatch(/Start(ed|ing)/);
});
