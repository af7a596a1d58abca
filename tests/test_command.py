"""ocf_lib.adapters.command: programs run with argument lists, output captured, time bounded."""
from __future__ import annotations

import os
import time

import pytest

from ocf_lib.adapters import command


def _children_left() -> list[str]:
    """Our own unreaped or still running children (zombies would show up here)."""
    out = command.run(["ps", "-o", "pid=,stat=,args=", "--ppid", str(os.getpid())]).stdout
    return [line for line in out.splitlines() if "ps -o" not in line]


def test_run_captures_stdout_stderr_and_exit_code() -> None:
    result = command.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_run_passes_arguments_verbatim_without_a_shell() -> None:
    args = ["a b", "$HOME", ";", "`id`", "*", ""]
    assert command.run(["printf", "%s|", *args]).stdout == "|".join(args) + "|"


def test_run_reports_death_by_signal_as_negative_code() -> None:
    assert command.run(["sh", "-c", "kill -9 $$"]).rc == -9


def test_run_searches_path_and_accepts_absolute_paths() -> None:
    assert command.run(["true"]).rc == 0
    assert command.run(["/bin/sh", "-c", "exit 4"]).rc == 4


@pytest.mark.parametrize("program", ["kuth-no-such-program", "/nonexistent/program"])
def test_run_raises_command_not_found_for_missing_programs(program: str) -> None:
    with pytest.raises(command.CommandNotFound) as caught:
        command.run([program, "arg"])
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.program == program


def test_run_kills_and_reaps_a_program_past_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(command.CommandTimeout) as caught:
        command.run(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 2
    assert caught.value.argv == ["sleep", "30"] and caught.value.timeout == 0.3
    assert _children_left() == []


def test_timeout_holds_when_the_program_closed_its_output_but_runs_on() -> None:
    started = time.monotonic()
    with pytest.raises(command.CommandTimeout):
        command.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.3)
    assert time.monotonic() - started < 2
    assert _children_left() == []


def test_run_reads_output_larger_than_a_pipe_buffer_from_both_streams() -> None:
    result = command.run(["sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"])
    assert (len(result.stdout), len(result.stderr)) == (300000, 200000)


def test_run_decodes_invalid_utf8_with_replacement() -> None:
    assert command.run(["printf", "\\377ok"]).stdout == "\ufffdok"


def test_stdin_is_dev_null() -> None:
    assert command.run(["cat"], timeout=5).stdout == ""


def test_child_gets_no_inherited_descriptors_beyond_stdio() -> None:
    leaked = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        out = command.run(["sh", "-c", "ls /proc/$$/fd"]).stdout.split()
    finally:
        os.close(leaked)
    assert str(leaked) not in out
    assert {"0", "1", "2"} <= set(out)


def test_child_does_not_inherit_pythons_ignored_sigpipe() -> None:
    # An ignored SIGPIPE survives exec: a child in a pipeline would then see EPIPE errors
    # instead of quietly ending when its reader goes away.
    status = command.run(["cat", "/proc/self/status"]).stdout
    ignored = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("SigIgn:")), 16)
    assert not ignored & (1 << (13 - 1))


def test_run_refuses_an_empty_argument_list() -> None:
    with pytest.raises(ValueError):
        command.run([])


def test_no_children_are_left_after_normal_runs() -> None:
    for _ in range(20):
        command.run(["true"])
    assert _children_left() == []


def test_installed_searches_path_and_accepts_paths():
    from ocf_lib.adapters.command import installed
    assert installed("ip") and installed("/bin/sh")
    assert not installed("kuth-no-such-program") and not installed("/nonexistent/ip")


def test_start_returns_while_the_program_runs_and_finish_collects_it() -> None:
    """A start (of ocf:kuth:IPaddr2) asks attrd for a list before it adds its address and
    reads the answer after: the program must run meanwhile."""
    began = time.monotonic()
    running = command.start(["sh", "-c", "sleep 0.3; echo late"])
    assert time.monotonic() - began < 0.2
    assert running.finish(timeout=5).stdout == "late\n"
    assert time.monotonic() - began >= 0.3
    assert _children_left() == []


def test_finish_kills_and_reaps_a_started_program_past_its_timeout() -> None:
    running = command.start(["sleep", "30"])
    with pytest.raises(command.CommandTimeout):
        running.finish(timeout=0.2)
    assert _children_left() == []
