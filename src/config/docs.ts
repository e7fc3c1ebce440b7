import { describeType, isOption, type OptType, type Options } from "./dsl.js";
import { nodeOptions } from "./options.js";

interface Row {
  path: string;
  type: string;
  default: string;
  description: string;
  debian: string;
}

function rows(options: Options, prefix: string, out: Row[]): void {
  for (const [name, decl] of Object.entries(options)) {
    const p = prefix ? `${prefix}.${name}` : name;
    if (!isOption(decl)) {
      rows(decl, p, out);
      continue;
    }
    out.push({
      path: p,
      type: describeType(decl.type),
      default: decl.type.kind === "submodule" ? "" : JSON.stringify(decl.default),
      description: decl.description,
      debian: decl.debian ?? "",
    });
    const inner = submoduleOf(decl.type);
    if (inner) rows(inner.options, `${p}${inner.suffix}`, out);
  }
}

function submoduleOf(type: OptType): { options: Options; suffix: string } | undefined {
  if (type.kind === "submodule") return { options: type.options, suffix: "" };
  if (type.kind === "attrs" && type.of.kind === "submodule") return { options: type.of.options, suffix: ".<name>" };
  if (type.kind === "list" && type.of.kind === "submodule") return { options: type.of.options, suffix: ".*" };
  if (type.kind === "nullOr") return submoduleOf(type.of);
  return undefined;
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** docs/options.md: every node option with its type, default and Debian mapping. */
export function optionsMarkdown(): string {
  const out: Row[] = [];
  rows(nodeOptions, "", out);
  // evaluated apart (its configuration is a whole module), so declared in eval.ts, not options.ts
  out.push(
    {
      path: "specialisation.<name>.configuration",
      type: "module",
      default: "",
      description:
        "An alternative configuration of the node: with inheritParentConfig, the node's modules plus this one (NixOS semantics; settle conflicts with lib.mkForce). Switch to it in the guest with `${nodes.x.system.build.toplevel}/specialisation/<name>/bin/switch-to-configuration test`; `${toplevel}/bin/switch-to-configuration` switches back.",
      debian:
        "every configuration's packages are in the image (a unit only a specialisation enables is disabled in the others); each configuration's files are listed in /usr/lib/vmrig/system[/specialisation/<name>]/manifest, and the switch applies the difference and restarts, reloads, starts or stops the units whose files changed",
    },
    {
      path: "specialisation.<name>.inheritParentConfig",
      type: "boolean",
      default: "true",
      description: "Start from the node's own configuration (NixOS's default) rather than from vmrig's defaults alone.",
      debian: "",
    },
  );
  return [
    "# Node options",
    "",
    "Generated from `src/config/options.ts` by `npm run docs` — the same declarations give the",
    "TypeScript types, the validation and the merge rules, so this list cannot drift from them.",
    "",
    "| option | type | default | meaning | on Debian |",
    "|---|---|---|---|---|",
    ...out.map(
      (r) =>
        `| \`${r.path}\` | ${cell(r.type)} | ${r.default ? `\`${cell(r.default)}\`` : ""} | ${cell(r.description)} | ${cell(r.debian)} |`,
    ),
    "",
  ].join("\n");
}
