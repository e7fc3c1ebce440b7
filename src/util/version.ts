import fs from "node:fs";

let version: string | undefined;

export function vmrigVersion(): string {
  version ??= (
    JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
  ).version;
  return version;
}
