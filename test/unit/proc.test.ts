import { describe, expect, it } from "vitest";
import { run } from "../../src/util/proc.js";
import { VmrigError } from "../../src/util/errors.js";

describe("host commands", () => {
  it("reports a failure with the output in the order it came, and the lines that explain it even when far from the end", async () => {
    // the pause: two pipes carry stdout and stderr, so "the order it came" needs the lines to come apart in time
    const script =
      'echo "setting up x"; echo "dpkg: error processing package x (--configure)" >&2; sleep 0.2; for i in $(seq 50); do echo "line $i"; done; exit 1';
    const e = await run("sh", ["-c", script], { explains: /^dpkg: /, hint: "apt failed" }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(VmrigError);
    const err = e as VmrigError;
    expect(err.status).toBe(1);
    expect(err.output).toContain("setting up x\ndpkg: error processing package x (--configure)");
    expect(err.output).toContain("line 50");
    expect(err.output).not.toContain("line 3\n");
    expect(err.message).toContain("hint: apt failed");
  });

  it("names a full disk as such", async () => {
    const e = (await run("sh", ["-c", "echo 'write: No space left on device' >&2; exit 1"]).catch(
      (x: unknown) => x,
    )) as VmrigError;
    expect(e.hint).toMatch(/the disk is full: `vmrig gc`/);
  });
});
