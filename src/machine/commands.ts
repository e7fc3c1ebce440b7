import { DEFAULT_TIMEOUT, quote, shown, type ExecuteOptions, type ExecuteResult, type MachineCore } from "./core.js";
import { waitFor } from "./waiting.js";

export async function execute(
  m: MachineCore,
  location: string | undefined,
  cmd: string,
  opts: ExecuteOptions = {},
): Promise<ExecuteResult> {
  return m.nested(`executing: ${cmd}`, async () => {
    const r = await m.run(cmd, `execute(${quote(cmd)})`, location, opts.timeout ?? DEFAULT_TIMEOUT, true);
    return { status: r.status, stdout: opts.checkOutput === false ? "" : r.stdout };
  });
}

/** succeed()/fail(): run each command, throw unless its status is what `want` asks for. */
export async function expectStatus(
  m: MachineCore,
  location: string | undefined,
  cmds: (string | ExecuteOptions)[],
  want: "zero" | "nonzero",
): Promise<string> {
  const last = cmds[cmds.length - 1];
  const opts: ExecuteOptions = typeof last === "object" ? last : {};
  const method = want === "zero" ? "succeed" : "fail";
  let output = "";
  for (const cmd of cmds.filter((c): c is string => typeof c === "string")) {
    const call = `${method}(${quote(cmd)})`;
    await m.nested(`${want === "zero" ? "must succeed" : "must fail"}: ${cmd}`, async () => {
      const r = await m.run(cmd, call, location, opts.timeout ?? DEFAULT_TIMEOUT, true);
      if ((r.status === 0) !== (want === "zero")) {
        throw m.fail(
          want === "zero"
            ? `command failed with exit status ${r.status}`
            : "command succeeded but was expected to fail",
          call,
          {
            command: cmd,
            status: r.status,
            output: shown(r),
            location,
            ...switchHint(m, cmd, r.status),
          },
        );
      }
      output += r.stdout;
    });
  }
  return output;
}

/** A switch to a specialisation the node does not have: say which ones it has. */
function switchHint(m: MachineCore, cmd: string, status: number): { hint?: string } {
  const wanted = /\/specialisation\/([^/\s]+)\/bin\/switch-to-configuration/.exec(cmd)?.[1];
  const have = m.ctx.specialisations ?? [];
  if (wanted === undefined || status !== 127 || have.includes(wanted)) return {};
  return {
    hint: have.length
      ? `${m.name} has no specialisation "${wanted}"; its specialisations: ${have.join(", ")}`
      : `${m.name} has no specialisations: define specialisation.${wanted}.configuration in its node`,
  };
}

/** waitUntilSucceeds()/waitUntilFails(): retry `cmd` every second until its status is what `want` asks for. */
export async function retryCommand(
  m: MachineCore,
  location: string | undefined,
  cmd: string,
  want: "zero" | "nonzero",
  timeout: number,
): Promise<string> {
  const call = `${want === "zero" ? "waitUntilSucceeds" : "waitUntilFails"}(${quote(cmd)})`;
  let stdout = "";
  await waitFor(
    m,
    {
      call,
      heading: `waiting for ${want === "zero" ? "success" : "failure"}: ${cmd}`,
      what: `\`${cmd}\` to ${want === "zero" ? "succeed" : "fail"}`,
      timeout,
      location,
    },
    async () => {
      const r = await m.run(cmd, call, location, timeout);
      stdout = r.stdout;
      return {
        done: (r.status === 0) === (want === "zero"),
        last: `last attempt: exit status ${r.status}\n${shown(r)}`,
      };
    },
  );
  return stdout;
}

export async function sleepInGuest(m: MachineCore, location: string | undefined, secs: number): Promise<void> {
  await m.run(`sleep ${secs}`, `sleep(${secs})`, location, secs + 60);
}
