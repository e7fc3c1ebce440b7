// Lints vmrig's own sources. User test files are linted by src/runner/check.ts
// with the same floating-promise rules.
import tseslint from "typescript-eslint";

/**
 * The layers (docs/architecture.md): each folder of src/ may import only the folders
 * named here. Enforced below with `no-restricted-imports`; test/unit/layers.test.ts
 * proves that a break fails the lint.
 */
export const LAYERS = {
  util: [],
  config: ["util"],
  image: ["config", "util"],
  vm: ["util"],
  machine: ["vm", "util"],
  session: ["machine", "image", "config", "util"],
  runner: ["session", "image", "config", "util"],
  fixtures: ["session", "util"],
  reporters: ["runner", "util"],
  cli: ["runner", "reporters", "util"],
};

/** The few files allowed past their layer, and why. */
export const LAYER_EXCEPTIONS = {
  // a run's shared host-side resources: the vlan switches and the accelerator probe
  "src/session/topology.ts": ["vm"],
  // implements the vm layer's SnapshotStore interface over the image store
  "src/session/snapshots.ts": ["vm"],
  // `vmrig doctor` probes QEMU and the accelerator directly
  "src/runner/doctor.ts": ["vm"],
};

const forbidden = (allowed) =>
  Object.keys(LAYERS)
    .filter((l) => !allowed.includes(l))
    .flatMap((l) => [`../${l}/*`, `../../${l}/*`]);

const layerRule = (layer, extra = []) => ({
  "no-restricted-imports": [
    "error",
    {
      patterns: [
        {
          group: forbidden([layer, ...LAYERS[layer], ...extra]),
          message: `src/${layer}/ may import only ${[...LAYERS[layer], ...extra].join(", ") || "nothing of vmrig's"} (the layers in eslint.config.js and docs/architecture.md)`,
        },
      ],
    },
  ],
});

/** The layering rules alone (test/unit/layers.test.ts lints probes with them). */
export const layerConfigs = () => [
  ...Object.keys(LAYERS).map((layer) => ({ files: [`src/${layer}/**/*.ts`], rules: layerRule(layer) })),
  ...Object.entries(LAYER_EXCEPTIONS).map(([file, extra]) => ({
    files: [file],
    rules: layerRule(file.split("/")[1], extra),
  })),
];

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "examples/library/**"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "@typescript-eslint/restrict-template-expressions": "off",
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
  ...layerConfigs(),
);
