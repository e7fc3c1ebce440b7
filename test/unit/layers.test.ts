import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
// @ts-expect-error the lint config is plain JavaScript
import { layerConfigs } from "../../eslint.config.js";

const root = new URL("../..", import.meta.url).pathname;

/** Lint `code` as if it were the file `filePath`, with the layering rules only. */
async function lintAs(filePath: string, code: string): Promise<string[]> {
  const eslint = new ESLint({
    cwd: root,
    overrideConfigFile: true,
    overrideConfig: [
      { files: ["**/*.ts"], languageOptions: { parser: tseslint.parser } },
      ...(layerConfigs as () => object[])(),
    ],
  });
  const [r] = await eslint.lintText(code, { filePath });
  return r!.messages.map((m) => m.message);
}

describe("import layering (eslint.config.js)", () => {
  it("fails an import from a higher layer", async () => {
    const msgs = await lintAs(
      "src/machine/probe.ts",
      'import type { Logger } from "../session/logger.js";\nexport type X = Logger;\n',
    );
    expect(msgs.join("\n")).toContain("src/machine/ may import only vm, util");
  });

  it("fails the cli reaching past the driver", async () => {
    expect(
      (
        await lintAs(
          "src/cli/probe.ts",
          'import { evalNodes } from "../config/eval.js";\nexport const f = evalNodes;\n',
        )
      ).length,
    ).toBe(1);
    expect(
      (
        await lintAs(
          "src/image/services/probe.ts",
          'import { Machine } from "../../machine/machine.js";\nexport const M = Machine;\n',
        )
      ).length,
    ).toBe(1);
  });

  it("allows imports from the layers below and the named exceptions", async () => {
    expect(
      await lintAs(
        "src/machine/probe.ts",
        'import { run } from "../util/proc.js";\nimport type { Guest } from "../vm/guest.js";\nexport type G = Guest;\nexport const r = run;\n',
      ),
    ).toEqual([]);
    expect(
      await lintAs(
        "src/session/topology.ts",
        'import { VlanSwitch } from "../vm/vlan.js";\nexport const V = VlanSwitch;\n',
      ),
    ).toEqual([]);
    expect(
      (await lintAs("src/runner/run.ts", 'import { VlanSwitch } from "../vm/vlan.js";\nexport const V = VlanSwitch;\n'))
        .length,
    ).toBe(1);
  });
});
