import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { optionsMarkdown } from "../../src/config/docs.js";
// @ts-expect-error a plain JavaScript script
import { apiMarkdown, undocumented } from "../../scripts/api-docs.mjs";

describe("docs/options.md", () => {
  it("is generated from the option declarations and up to date (run `npm run docs`)", () => {
    const committed = fs.readFileSync(path.resolve(import.meta.dirname, "../../docs/options.md"), "utf8");
    expect(committed).toBe(optionsMarkdown());
  });

  it("documents nested options of attribute sets and lists", () => {
    const md = optionsMarkdown();
    expect(md).toContain("| `users.users.<name>.packages` | list of string |");
    expect(md).toContain("| `services.mysql.ensureUsers.*.ensurePermissions` |");
    expect(md).toContain("| `services.nginx.virtualHosts.<name>.locations.<name>.proxyPass` |");
  });
});

describe("docs/api.md", () => {
  it("is generated from the Machine facade's and the globals' doc comments and up to date (run `npm run docs`)", () => {
    const committed = fs.readFileSync(path.resolve(import.meta.dirname, "../../docs/api.md"), "utf8");
    expect(committed).toBe((apiMarkdown as () => string)());
  });

  it("documents every method of the Machine API", () => {
    const md = (apiMarkdown as () => string)();
    for (const m of [
      "succeed",
      "waitForUnit",
      "copyFromHost",
      "screenshot",
      "shell",
      "waitForText",
      "forwardPort",
      "reboot",
    ])
      expect(md).toContain(`**\`${m}\`**`);
    for (const g of ["startAll", "subtest", "snapshot", "restore", "pollingCondition"])
      expect(md).toContain(`**\`${g}\`**`);
    expect(md).not.toContain("**`kill`**");
    expect(undocumented).toEqual([]);
  });
});
