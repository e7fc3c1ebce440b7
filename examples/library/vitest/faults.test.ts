// A second file: Vitest runs it in another worker process, in parallel with web.test.ts,
// on the same cache.
import { test as base, expect } from "vitest";
import { withMachines } from "vmrig/vitest";
import { web } from "../machines.js";

const test = withMachines(base, web, { name: "vitest-faults" });

test("a partition cuts the client off the server, and heal() brings it back", async ({ machines }) => {
  const { server, client, partition, heal } = machines;
  await server.waitForUnit("nginx.service");
  await partition([client], [server]);
  await client.fail("curl -sf --max-time 3 http://server/");
  await heal();
  expect(await client.succeed("curl -sf http://server/")).toContain("nginx");
});
