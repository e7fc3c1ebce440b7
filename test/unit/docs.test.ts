import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { optionsMarkdown } from "../../src/config/docs.js";

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
