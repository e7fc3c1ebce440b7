import { describeType, isOption, type OptType, type Option, type Options } from "./dsl.js";
import { configError } from "../util/errors.js";
import { suggest } from "../util/suggest.js";

/** One module's value for one option, with where it came from. */
export interface Definition {
  source: string;
  value: unknown;
  priority: number;
  /** where a list's elements go among the other definitions' (`lib.mkOrder`; lower first) */
  order?: number;
}

export const PRIORITY = { force: 50, normal: 100, default: 1000 } as const;
/** NixOS's list orders: `mkBefore` 500, a plain definition 1000, `mkAfter` 1500. */
export const ORDER = { before: 500, normal: 1000, after: 1500 } as const;

interface Wrapped {
  _vmrigPriority: number;
  value: unknown;
}

interface Ordered {
  _vmrigOrder: number;
  value: unknown;
}

function isWrapped(v: unknown): v is Wrapped {
  return typeof v === "object" && v !== null && typeof (v as Wrapped)._vmrigPriority === "number";
}

function isOrdered(v: unknown): v is Ordered {
  return typeof v === "object" && v !== null && typeof (v as Ordered)._vmrigOrder === "number";
}

/** `mkForce`/`mkDefault` and `mkOrder` may wrap a value at any level, in any nesting; the innermost of each wins. */
function unwrap(d: Definition): Definition {
  let { value, priority, order } = d;
  for (;;) {
    if (isWrapped(value)) priority = value._vmrigPriority;
    else if (isOrdered(value)) order = value._vmrigOrder;
    else break;
    value = value.value;
  }
  return { source: d.source, value, priority, ...(order === undefined ? {} : { order }) };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !isWrapped(v) && !isOrdered(v);
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined (a read of an option or attribute that does not exist?)";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an attribute set";
  return `${typeof v} ${JSON.stringify(v)}`;
}

function typeError(path: string, expected: string, def: Definition): Error {
  return configError(`option \`${path}\` expects ${expected}, but ${def.source} sets ${kindOf(def.value)}`, {
    hint: "see docs/options.md for every option's type",
  });
}

/** Merge every module's definitions of an option group, NixOS style. */
export function mergeOptions(
  options: Options,
  defs: Definition[],
  path: string,
  allPaths: readonly string[],
  freeform?: OptType,
): Record<string, unknown> {
  const byKey = new Map<string, Definition[]>();
  for (const raw of defs) {
    const d = unwrap(raw);
    if (d.value === undefined) continue;
    if (!isPlainObject(d.value)) throw typeError(path, "an attribute set", d);
    for (const [key, value] of Object.entries(d.value)) {
      if (value === undefined) continue;
      if (!Object.hasOwn(options, key) && !freeform)
        throw unknownOption(`${path}.${key}`, key, Object.keys(options), allPaths);
      let list = byKey.get(key);
      if (!list) byKey.set(key, (list = []));
      list.push({ source: d.source, value, priority: d.priority });
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, decl] of Object.entries(options)) {
    const sub = byKey.get(key) ?? [];
    const subPath = `${path}.${key}`;
    out[key] = isOption(decl) ? mergeOption(decl, sub, subPath, allPaths) : mergeOptions(decl, sub, subPath, allPaths);
  }
  if (freeform) {
    for (const [key, sub] of byKey) {
      if (Object.hasOwn(options, key)) continue;
      out[key] = mergeType(freeform, highestPriority(sub.map(unwrap)), `${path}.${quoteKey(key)}`, allPaths);
    }
  }
  return out;
}

function mergeOption(opt: Option, defs: Definition[], path: string, allPaths: readonly string[]): unknown {
  const unwrapped = defs.map(unwrap).filter((d) => d.value !== undefined);
  if (unwrapped.length === 0) return defaultOf(opt.type, opt.default, allPaths);
  return mergeType(opt.type, highestPriority(unwrapped), path, allPaths);
}

function highestPriority(defs: Definition[]): Definition[] {
  const best = Math.min(...defs.map((d) => d.priority));
  return defs.filter((d) => d.priority === best);
}

function defaultOf(type: OptType, def: unknown, allPaths: readonly string[]): unknown {
  if (type.kind === "submodule") return mergeOptions(type.options, [], "", allPaths, type.freeform);
  return structuredClone(def);
}

function mergeType(type: OptType, defs: Definition[], path: string, allPaths: readonly string[]): unknown {
  switch (type.kind) {
    case "list": {
      const out: unknown[] = [];
      // definitions in module order, except where mkOrder/mkBefore/mkAfter says otherwise (a stable sort)
      const ordered = [...defs].sort((a, b) => (a.order ?? ORDER.normal) - (b.order ?? ORDER.normal));
      for (const d of ordered) {
        if (!Array.isArray(d.value)) throw typeError(path, describeType(type), d);
        d.value.forEach((el: unknown, i) => {
          out.push(
            mergeType(type.of, [{ source: d.source, value: el, priority: d.priority }], `${path}[${i}]`, allPaths),
          );
        });
      }
      return out;
    }
    case "attrs": {
      const byKey = new Map<string, Definition[]>();
      for (const d of defs) {
        if (!isPlainObject(d.value)) throw typeError(path, describeType(type), d);
        for (const [k, v] of Object.entries(d.value)) {
          if (v === undefined) continue;
          let list = byKey.get(k);
          if (!list) byKey.set(k, (list = []));
          list.push(unwrap({ source: d.source, value: v, priority: d.priority }));
        }
      }
      const out: Record<string, unknown> = {};
      for (const [k, sub] of byKey)
        out[k] = mergeType(type.of, highestPriority(sub), `${path}.${quoteKey(k)}`, allPaths);
      return out;
    }
    case "submodule":
      return mergeOptions(type.options, defs, path, allPaths, type.freeform);
    case "nullOr": {
      const nonNull = defs.filter((d) => d.value !== null);
      if (nonNull.length === 0) return null;
      if (nonNull.length !== defs.length) return mergeScalar(defs, path);
      return mergeType(type.of, nonNull, path, allPaths);
    }
    case "either": {
      for (const d of defs) {
        if (!type.of.some((alt) => matches(alt, d.value))) throw typeError(path, describeType(type), d);
      }
      return mergeScalar(defs, path);
    }
    default:
      for (const d of defs) if (!matches(type, d.value)) throw typeError(path, describeType(type), d);
      return mergeScalar(defs, path);
  }
}

function matches(type: OptType, v: unknown): boolean {
  switch (type.kind) {
    case "str":
      return typeof v === "string";
    case "int":
      return Number.isInteger(v);
    case "bool":
      return typeof v === "boolean";
    case "enum":
      return typeof v === "string" && type.values.includes(v);
    case "list":
      return Array.isArray(v) && v.every((e) => matches(type.of, e));
    case "attrs":
      return isPlainObject(v) && Object.values(v).every((e) => matches(type.of, e));
    case "nullOr":
      return v === null || matches(type.of, v);
    case "either":
      return type.of.some((alt) => matches(alt, v));
    case "submodule":
      return isPlainObject(v);
  }
}

function mergeScalar(defs: Definition[], path: string): unknown {
  const first = defs[0]!;
  for (const d of defs.slice(1)) {
    if (JSON.stringify(d.value) !== JSON.stringify(first.value)) {
      throw configError(
        `conflicting definitions for \`${path}\`: ${JSON.stringify(first.value)} in ${first.source} and ${JSON.stringify(d.value)} in ${d.source}`,
        { hint: "wrap the one that should win in lib.mkForce(…), or the fallback in lib.mkDefault(…)" },
      );
    }
  }
  return first.value;
}

function quoteKey(k: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k);
}

function unknownOption(fullPath: string, key: string, siblings: string[], allPaths: readonly string[]): Error {
  // Suggest a sibling first (a typo), else any option path ending the same way (a misplaced option).
  const sib = suggest(key, siblings);
  const prefix = fullPath.slice(0, fullPath.length - key.length);
  const pathHit = sib ? undefined : allPaths.find((p) => p.endsWith(`.${key}`) || p === key);
  const nodePrefix =
    /^(?:nodes|containers)\.[^.]+\.(?:specialisation\.[^.]+\.configuration\.)?|^defaults\./.exec(fullPath)?.[0] ?? "";
  const didYouMean = sib ? `${prefix}${sib}` : pathHit ? `${nodePrefix}${pathHit}` : undefined;
  return configError(`unknown option \`${fullPath}\``, {
    hint: didYouMean ? `did you mean \`${didYouMean}\`?` : "docs/options.md lists every option",
  });
}

/** Every option path of a schema, for suggestions and docs. */
export function optionPaths(options: Options, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(options)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (isOption(v)) out.push(p);
    else out.push(p, ...optionPaths(v, p));
  }
  return out;
}
