"""Runs a NixOS test's Python script against vmrig's machines (SPEC §11).

vmrig starts this with the script's file, the test file it came from and the line the
script starts on there. Every machine call is a request to vmrig on fd 3 (one JSON line)
and its answer on fd 4: the machines are vmrig's TypeScript ones, not a second
implementation. What runs here is only what the NixOS driver does in Python itself:
subtests, retry, polling conditions, `t`.
"""

import contextlib
import datetime
import inspect
import json
import os
import sys
import time
import traceback
import unittest

SCRIPT_FILE, TEST_FILE, FIRST_LINE, NAMES = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])

_requests = os.fdopen(3, "w", buffering=1)
_answers = os.fdopen(4, "r")
_next_id = 0


class MachineError(Exception):
    """A machine call failed; the message is vmrig's report (machine, call, command, output, hint)."""

    def __init__(self, message, ref):
        super().__init__(message)
        self.vmrig_ref = ref


def _seconds(value):
    return value.total_seconds() if isinstance(value, datetime.timedelta) else value


def _script_line():
    """The line of the test script that made the current call, as `file:line` of the test file."""
    for frame in inspect.stack()[2:]:
        if frame.filename == SCRIPT_FILE:
            return f"{TEST_FILE}:{frame.lineno + FIRST_LINE - 1}"
    return None


def _request(op, **fields):
    global _next_id
    _next_id += 1
    fields = {k: _seconds(v) for k, v in fields.items()}
    if "args" in fields:
        fields["args"] = [_seconds(a) for a in fields["args"]]
    if "kwargs" in fields:
        fields["kwargs"] = {k: _seconds(v) for k, v in fields["kwargs"].items()}
    _requests.write(json.dumps({"id": _next_id, "op": op, "location": _script_line(), **fields}) + "\n")
    while True:
        line = _answers.readline()
        if not line:
            sys.exit(3)  # vmrig is gone
        answer = json.loads(line)
        # an answer to a call given up on (Ctrl-C at the interactive prompt) comes late: skipped
        if answer.get("id") == _next_id:
            break
    if "error" in answer:
        raise MachineError(answer["error"], answer.get("ref"))
    return answer.get("result")


# ---- polling conditions: checked before every machine call, as the NixOS driver does ----------

_active_conditions = []
_checking = [False]


class PollingCondition:
    def __init__(self, condition, seconds_interval=2.0, description=None):
        self.condition = condition
        self.seconds_interval = seconds_interval
        self.description = description or (condition.__doc__ or condition.__name__).strip()
        self.last_called = float("-inf")
        self.entered = False

    def check(self, force=False):
        if (self.entered or not self.overdue) and not force:
            return True
        with self:
            self.last_called = time.monotonic()
            try:
                ok = self.condition()
            except Exception:
                ok = False
            return bool(ok) if ok is not None else True

    def maybe_raise(self):
        if not self.check():
            raise Exception(f"Polling condition failed: {self.description}")

    @property
    def overdue(self):
        return time.monotonic() - self.last_called >= self.seconds_interval

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.entered = False
        return False


class _ConditionScope:
    """`with condition:` in a script: the condition holds throughout the block."""

    def __init__(self, cond):
        self.cond = cond

    def __enter__(self):
        _active_conditions.append(self.cond)
        return self

    def __exit__(self, *exc):
        _active_conditions.remove(self.cond)
        return False

    def __call__(self):
        return self.cond.condition()

    def check(self, force=False):
        return self.cond.check(force)

    def maybe_raise(self):
        self.cond.maybe_raise()


def polling_condition(fun=None, *, seconds_interval=2.0, description=None):
    def wrap(f):
        return _ConditionScope(PollingCondition(f, seconds_interval, description))

    return wrap(fun) if fun is not None else wrap


def _check_conditions():
    if _checking[0]:
        return
    _checking[0] = True
    try:
        for cond in list(_active_conditions):
            cond.maybe_raise()
    finally:
        _checking[0] = False


# ---- machines --------------------------------------------------------------------------------


class Machine:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<Machine '{self.name}'>"

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args, **kwargs):
            _check_conditions()
            return _request("machine", machine=self.name, method=method, args=list(args), kwargs=kwargs)

        call.__name__ = method
        return call

    # execute and systemctl return a tuple in NixOS
    def execute(self, command, check_return=True, check_output=True, timeout=900):
        _check_conditions()
        r = _request(
            "machine",
            machine=self.name,
            method="execute",
            args=[command],
            kwargs={"check_output": check_output, "timeout": timeout},
        )
        return (r[0], r[1])

    def systemctl(self, q, user=None):
        _check_conditions()
        r = _request("machine", machine=self.name, method="systemctl", args=[q], kwargs={"user": user})
        return (r[0], r[1])

    def wait_for_unit(self, unit, user=None, timeout=900):
        _check_conditions()
        _request("machine", machine=self.name, method="wait_for_unit", args=[unit], kwargs={"user": user, "timeout": timeout})

    def nested(self, msg):
        return _nested(f"{self.name}: {msg}")


class VLan(int):
    @property
    def nr(self):
        return int(self)


@contextlib.contextmanager
def _nested(message):
    _request("nested_begin", message=message)
    try:
        yield
    finally:
        _request("nested_end")


@contextlib.contextmanager
def subtest(name):
    _request("subtest_begin", name=name)
    try:
        yield
    except BaseException as e:
        _request("subtest_end", error=f"{type(e).__name__}: {e}")
        raise
    _request("subtest_end")


def start_all():
    _request("start_all")


def join_all():
    _request("join_all")


def serial_stdout_on():
    _request("serial_stdout", on=True)


def serial_stdout_off():
    _request("serial_stdout", on=False)


def retry(fn, timeout_seconds=900):
    """Call fn(last_try) once a second until it returns true, at most timeout_seconds."""
    timeout_seconds = _seconds(timeout_seconds)
    deadline = time.monotonic() + timeout_seconds
    while True:
        last = time.monotonic() >= deadline
        if fn(last):
            return
        if last:
            raise Exception(f"action timed out after {timeout_seconds} seconds")
        time.sleep(1)


_MACHINES = []


def create_machine(start_command, *, name=None, keep_machine_state=False):
    """NixOS's create_machine: another machine of the node whose VM the start command names
    (`${nodes.x.system.build.vm}/bin/run-x-vm`, then QEMU options), not started."""
    if not isinstance(start_command, str):
        raise TypeError("create_machine(start_command): a string, the node's start script and QEMU options")
    if keep_machine_state:
        _request("log", message="create_machine(keep_machine_state=True): vmrig keeps disks with `vmrig run --keep-vm-state`")
    m = Machine(_request("create_machine", start_command=start_command, name=name))
    _MACHINES.append(m)
    return m


class _Log:
    def info(self, *args):
        _request("log", message=" ".join(str(a) for a in args))

    log = info
    warning = info
    error = info

    @contextlib.contextmanager
    def nested(self, message):
        with _nested(message):
            yield


class _Driver:
    def __init__(self, info):
        self.test_name = info["testName"]
        self.out_dir = info["resultDir"]


def _globals(info):
    machines = _MACHINES
    machines.extend(Machine(n) for n in NAMES)
    t = unittest.TestCase()
    t.maxDiff = None
    g = {
        "__name__": "__main__",
        "start_all": start_all,
        "join_all": join_all,
        "subtest": subtest,
        "retry": retry,
        "polling_condition": polling_condition,
        "serial_stdout_on": serial_stdout_on,
        "serial_stdout_off": serial_stdout_off,
        "machines": machines,
        "vlans": [VLan(v) for v in info["vlans"]],
        "log": _Log(),
        "driver": _Driver(info),
        "t": t,
        "Machine": Machine,
        "create_machine": create_machine,
    }
    for m in machines:
        g[m.name.replace("-", "_")] = m
    if len(machines) == 1:
        g["machine"] = machines[0]
    return g


def _failure(e):
    """What failed, for vmrig's report: the exception, the line of the test file, and the traceback there."""
    tb = traceback.extract_tb(e.__traceback__)
    frames = [f for f in tb if f.filename == SCRIPT_FILE]
    line = frames[-1].lineno + FIRST_LINE - 1 if frames else None
    source = frames[-1].line if frames else None
    lines = []
    for f in tb:
        if f.filename == SCRIPT_FILE:
            lines.append(f'  {TEST_FILE}:{f.lineno + FIRST_LINE - 1}, in {"the test script" if f.name == "<module>" else f.name}')
            if f.line:
                lines.append(f"    {f.line}")
    return {
        "type": type(e).__name__,
        "message": str(e),
        "line": line,
        "source": source,
        "traceback": "\n".join(lines),
        "ref": getattr(e, "vmrig_ref", None),
    }


def interact(info, code):
    """NixOS's driverInteractive: a prompt with the machines and globals; test_script() runs the script."""
    import code as console

    try:
        import readline  # noqa: F401  (line editing and history at the prompt)
    except ImportError:
        pass
    g = _globals(info)
    g["test_script"] = lambda: exec(code, g)
    names = ", ".join(NAMES)
    banner = "\n".join(
        [
            f"vmrig interactive (Python): {info['testName']}",
            f"  machines: {names} (they boot on first use, or with start_all())",
            "  test_script()       run the test script",
            "  Ctrl-D              stop the machines and leave",
        ]
    )
    console.interact(banner=banner, local=g, exitmsg="stopping the machines…")
    return 0


def main():
    info = _request("hello")
    with open(SCRIPT_FILE) as f:
        code = compile(f.read(), SCRIPT_FILE, "exec")
    if sys.argv[5:] == ["interactive"]:
        return interact(info, code)
    try:
        exec(code, _globals(info))
    except SystemExit as e:
        if e.code not in (None, 0):
            _request("failed", failure={"type": "SystemExit", "message": f"the script called exit({e.code})", "line": None, "source": None, "traceback": "", "ref": None})
            return 1
    except BaseException as e:
        _request("failed", failure=_failure(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
