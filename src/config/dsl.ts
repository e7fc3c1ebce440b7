/**
 * A small option-declaration language. One declaration gives the TypeScript
 * type of a config, the runtime validator, the merge rule and the docs.
 */

export type OptType =
  | { readonly kind: "str" }
  | { readonly kind: "int" }
  | { readonly kind: "bool" }
  | { readonly kind: "enum"; readonly values: readonly string[] }
  | { readonly kind: "list"; readonly of: OptType }
  | { readonly kind: "attrs"; readonly of: OptType }
  | { readonly kind: "submodule"; readonly options: Options; readonly freeform?: OptType }
  | { readonly kind: "nullOr"; readonly of: OptType }
  | { readonly kind: "either"; readonly of: readonly OptType[] };

export interface Option<T extends OptType = OptType> {
  readonly isOption: true;
  readonly type: T;
  readonly default: unknown;
  readonly description: string;
  /** how the option maps onto Debian, for the docs */
  readonly debian?: string;
}

export interface Options {
  readonly [name: string]: Option | Options;
}

export const t = {
  str: { kind: "str" } as const,
  int: { kind: "int" } as const,
  bool: { kind: "bool" } as const,
  enum: <const V extends readonly string[]>(values: V) => ({ kind: "enum", values }) as const,
  listOf: <T extends OptType>(of: T) => ({ kind: "list", of }) as const,
  attrsOf: <T extends OptType>(of: T) => ({ kind: "attrs", of }) as const,
  submodule: <O extends Options>(options: O) => ({ kind: "submodule", options }) as const,
  /** A submodule whose undeclared keys are accepted as `of` (NixOS's freeformType), e.g. a config file's settings. */
  freeform: <O extends Options, F extends OptType>(of: F, options: O) =>
    ({ kind: "submodule", options, freeform: of }) as const,
  nullOr: <T extends OptType>(of: T) => ({ kind: "nullOr", of }) as const,
  either: <const T extends readonly OptType[]>(...of: T) => ({ kind: "either", of }) as const,
};

export function option<T extends OptType>(type: T, def: DefaultOf<T>, description: string, debian?: string): Option<T> {
  return { isOption: true, type, default: def, description, ...(debian ? { debian } : {}) };
}

/** A shallow check of defaults; the full InferType recursion is too deep for a generic. */
type DefaultOf<T extends OptType> = T extends { kind: "str" }
  ? string
  : T extends { kind: "int" }
    ? number
    : T extends { kind: "bool" }
      ? boolean
      : T extends { kind: "enum"; values: readonly (infer V)[] }
        ? V
        : T extends { kind: "list" }
          ? unknown[]
          : T extends { kind: "attrs" }
            ? Record<string, unknown>
            : T extends { kind: "nullOr" | "either" }
              ? unknown
              : T extends { kind: "submodule" }
                ? Record<string, never>
                : undefined;

export function isOption(x: Option | Options): x is Option {
  return (x as Option).isOption === true;
}

// ---- type inference: evaluated values ------------------------------------

export type InferType<T extends OptType> = T extends { kind: "str" }
  ? string
  : T extends { kind: "int" }
    ? number
    : T extends { kind: "bool" }
      ? boolean
      : T extends { kind: "enum"; values: readonly (infer V)[] }
        ? V
        : T extends { kind: "list"; of: infer E extends OptType }
          ? InferType<E>[]
          : T extends { kind: "attrs"; of: infer E extends OptType }
            ? Record<string, InferType<E>>
            : T extends { kind: "submodule"; options: infer O extends Options; freeform: infer F extends OptType }
              ? Evaluated<O> & Record<string, InferType<F>>
              : T extends { kind: "submodule"; options: infer O extends Options }
                ? Evaluated<O>
                : T extends { kind: "nullOr"; of: infer E extends OptType }
                  ? InferType<E> | null
                  : T extends { kind: "either"; of: readonly (infer E extends OptType)[] }
                    ? InferType<E>
                    : never;

export type Evaluated<O extends Options> = {
  -readonly [K in keyof O]: O[K] extends Option<infer T>
    ? InferType<T>
    : O[K] extends Options
      ? Evaluated<O[K]>
      : never;
};

// ---- type inference: what a module may define -----------------------------

declare const priorityBrand: unique symbol;

/** A value wrapped by `lib.mkForce` / `lib.mkDefault`. */
export interface Prioritised<V> {
  readonly [priorityBrand]?: V;
  readonly _vmrigPriority: number;
  readonly value: V;
}

type Def<V> = V | Prioritised<V>;

export type InputType<T extends OptType> = T extends { kind: "list"; of: infer E extends OptType }
  ? InputType<E>[]
  : T extends { kind: "attrs"; of: infer E extends OptType }
    ? Record<string, Def<InputType<E>>>
    : T extends { kind: "submodule"; options: infer O extends Options; freeform: infer F extends OptType }
      ? Input<O> & Record<string, Def<InputType<F>> | undefined>
      : T extends { kind: "submodule"; options: infer O extends Options }
        ? Input<O>
        : T extends { kind: "nullOr"; of: infer E extends OptType }
          ? InputType<E> | null
          : InferType<T>;

export type Input<O extends Options> = {
  -readonly [K in keyof O]?: O[K] extends Option<infer T>
    ? Def<InputType<T>>
    : O[K] extends Options
      ? Def<Input<O[K]>>
      : never;
};

export function describeType(type: OptType): string {
  switch (type.kind) {
    case "str":
      return "string";
    case "int":
      return "integer";
    case "bool":
      return "boolean";
    case "enum":
      return `one of ${type.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "list":
      return `list of ${describeType(type.of)}`;
    case "attrs":
      return `attribute set of ${describeType(type.of)}`;
    case "submodule":
      return type.freeform ? `submodule (other keys: ${describeType(type.freeform)})` : "submodule";
    case "nullOr":
      return `null or ${describeType(type.of)}`;
    case "either":
      return type.of.map(describeType).join(" or ");
  }
}
