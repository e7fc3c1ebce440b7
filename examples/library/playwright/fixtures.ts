// Machines as a Playwright Test worker fixture: one topology per worker, restored to its
// checkpoint before each test; a failed test keeps the machines' screenshots and journals in
// its own output folder (testInfo.outputPath()).
import { test as base } from "@playwright/test";
import { startMachines, type Rig } from "vmrig";
import { web } from "../machines.js";

type Web = Rig<"server" | "client">;

export const test = base.extend<{ machines: Web }, { rig: Web }>({
  rig: [
    async ({}, use, workerInfo) => {
      const rig = await startMachines(web, {
        name: `playwright-web-${workerInfo.workerIndex}`,
        resultDir: `${workerInfo.project.outputDir}/vmrig-worker-${workerInfo.workerIndex}`,
      });
      try {
        await rig.snapshot("clean");
        await use(rig);
      } finally {
        await rig.close();
      }
    },
    { scope: "worker" },
  ],
  machines: async ({ rig }, use, testInfo) => {
    await rig.restore("clean");
    await use(rig);
    if (testInfo.status !== testInfo.expectedStatus) await rig.saveFailureArtifacts(testInfo.outputPath("machines"));
  },
});

export { expect } from "@playwright/test";
