import { DEFAULT_TIMEOUT, quote, type ExecuteResult, type MachineCore } from "./core.js";
import { execute } from "./commands.js";
import { waitFor } from "./waiting.js";
import { shellQuote } from "../util/proc.js";

/** `systemctl ARGS`, for `user` in that user's session manager. */
export function systemctlCommand(args: string, user?: string): string {
  return user
    ? `su -l ${shellQuote(user)} --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user ${args.replace(/'/g, `'\\''`)}'`
    : `systemctl ${args}`;
}

export function systemctl(
  m: MachineCore,
  location: string | undefined,
  args: string,
  user?: string,
): Promise<ExecuteResult> {
  return execute(m, location, systemctlCommand(args, user));
}

function parseProperties(text: string): Record<string, string> {
  const info: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) info[line.slice(0, i)] = line.slice(i + 1);
  }
  return info;
}

export async function getUnitInfo(
  m: MachineCore,
  location: string | undefined,
  unit: string,
  user?: string,
): Promise<Record<string, string>> {
  const r = await m.run(
    systemctlCommand(`show ${shellQuote(unit)}`, user),
    `getUnitInfo(${quote(unit)})`,
    location,
    60,
  );
  return parseProperties(r.stdout);
}

export async function getUnitProperty(
  m: MachineCore,
  location: string | undefined,
  unit: string,
  property: string,
  user?: string,
): Promise<string> {
  const info = await getUnitInfo(m, location, unit, user);
  if (!(property in info))
    throw m.fail(`unit ${unit} has no property ${property}`, `getUnitProperty(${quote(unit)}, ${quote(property)})`, {
      location,
    });
  return info[property]!;
}

export async function requireUnitState(
  m: MachineCore,
  location: string | undefined,
  unit: string,
  state = "active",
  user?: string,
): Promise<void> {
  const info = await getUnitInfo(m, location, unit, user);
  if (info.ActiveState !== state) {
    throw m.fail(
      `unit ${unit} is ${info.ActiveState ?? "unknown"}, expected ${state}`,
      `requireUnitState(${quote(unit)}, ${quote(state)})`,
      { location },
    );
  }
}

/** Until `unit` is active; at once if it failed, or if it is inactive and nothing will start it (NixOS). */
export async function waitForUnit(
  m: MachineCore,
  location: string | undefined,
  unit: string,
  opts: { user?: string; timeout?: number } = {},
): Promise<void> {
  const call = `waitForUnit(${quote(unit)})`;
  const userArg = opts.user ? ` --user -M ${shellQuote(`${opts.user}@`)}` : "";
  await waitFor(
    m,
    {
      call,
      heading: `waiting for unit ${unit}${opts.user ? ` of ${opts.user}` : ""}`,
      what: `unit ${unit} to become active`,
      timeout: opts.timeout ?? DEFAULT_TIMEOUT,
      location,
    },
    async () => {
      const r = await m.run(
        // The job count first: read after the unit, the unit could finish its job in
        // between and look "inactive with nothing pending" on its way to active.
        `systemctl${userArg} show -p NJobs -p SystemState 2>&1; systemctl${userArg} show --property=ActiveState,SubState,LoadState,Result ${shellQuote(unit)} 2>&1`,
        call,
        location,
        60,
      );
      const props = parseProperties(r.stdout);
      // Before the boot transaction is queued every unit looks idle: not a verdict yet.
      const jobs = props.SystemState === "initializing" && props.NJobs === "0" ? 1 : Number(props.NJobs ?? "1");
      if (props.ActiveState === "active") return { done: true };
      if (props.ActiveState === "failed") {
        const why = await m.run(
          `systemctl${userArg} status --no-pager --lines=20 ${shellQuote(unit)} 2>&1 || true`,
          call,
          location,
          60,
        );
        return {
          done: false,
          fatal: m.fail(`unit ${unit} failed`, call, {
            output: why.stdout,
            location,
            hint: `\`journalctl -u ${unit}\` on the machine has the whole story`,
          }),
        };
      }
      if (props.LoadState && !["loaded", "not-found", "stub"].includes(props.LoadState)) {
        // bad-setting, error, masked: systemd will never start it; say what systemd says
        const why = await m.run(
          `systemctl${userArg} show -p LoadError --value ${shellQuote(unit)} 2>&1; systemctl${userArg} status --no-pager --lines=10 ${shellQuote(unit)} 2>&1 || true`,
          call,
          location,
          60,
        );
        return {
          done: false,
          fatal: m.fail(`unit ${unit} cannot be started: systemd says its LoadState is ${props.LoadState}`, call, {
            output: why.stdout,
            location,
            hint:
              props.LoadState === "masked"
                ? `${unit} is masked (a link to /dev/null): systemd.services.<name>.enable = false does that`
                : `\`systemd-analyze verify ${unit}\` on the machine names the bad line; a second ExecStart in an override needs ExecStart = ["", "…"]`,
          }),
        };
      }
      if (props.ActiveState === "inactive" && jobs === 0) {
        // As in NixOS: nothing will ever start it, so waiting longer cannot help.
        const missing = props.LoadState === "not-found";
        return {
          done: false,
          fatal: m.fail(
            missing
              ? `unit ${unit} does not exist and nothing is starting it`
              : `unit ${unit} is inactive and there are no pending jobs`,
            call,
            {
              location,
              output: r.stdout,
              hint: missing
                ? "check the unit name (`systemctl list-units` on the machine) and that its package is installed"
                : `nothing pulls ${unit} in: enable it (e.g. systemd.services.<name>.wantedBy) or start it with startJob()`,
            },
          ),
        };
      }
      return {
        done: false,
        last: `unit ${unit}: ${props.ActiveState ?? "(systemd not answering yet)"}/${props.SubState ?? ""}`,
      };
    },
  );
}
