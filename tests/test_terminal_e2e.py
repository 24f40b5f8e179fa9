"""What a person at a terminal sees: the real CLI on a pseudo-terminal, its screen read back.

The run is a child process whose stdout and stderr are a pty (so it draws its bar, as at a real
terminal); the test reads everything it wrote and replays it on a small screen model (carriage
return, line feed, cursor up, erase line), then checks the screen a person would be left with and
the bar frames drawn on the way.
"""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios

from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Sandbox
from tests.conftest import REPO, run_cli
from tests.helpers import sandbox_env, write_yaml

MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""
WIDTH = 120
BAR = re.compile(
    r"\d+/60 rows \(posted \d+, failed \d+\) \[\d\d:\d\d so far, \d\d:\d\d left at the rate limit\]"
)


def screen_of(output: str, width: int = WIDTH) -> list[str]:
    """The lines left on a terminal after `output` was written to it."""
    lines: list[list[str]] = [[]]
    row = col = 0
    at = 0
    while at < len(output):
        control = re.match(r"\x1b\[(\d*)([A-Za-z])", output[at:])
        char = output[at]
        if control:
            count = int(control.group(1) or 1)
            if control.group(2) == "A":
                row = max(0, row - count)
            elif control.group(2) == "K":
                del lines[row][col:]
            at += len(control.group(0))
            continue
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
        elif col < width:
            line = lines[row]
            line.extend(" " * (col - len(line) + 1))
            line[col] = char
            col += 1
        while len(lines) <= row:
            lines.append([])
        at += 1
    return ["".join(line).rstrip() for line in lines]


def run_on_a_terminal(
    args: list[str], env: dict[str, str], *, interrupt_when: re.Pattern[str]
) -> tuple[int, str]:
    """Run the CLI with a pty as stdout and stderr; SIGINT once `interrupt_when` shows. (code, output)"""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, WIDTH, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "importer", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, **env, "TERM": "xterm", "COLUMNS": str(WIDTH)},
        cwd=REPO,
    )
    os.close(terminal)
    output, interrupted = b"", False
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            child.kill()
            raise AssertionError(f"the run wrote nothing for 30 s:\n{output.decode(errors='replace')}")
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal: it has ended
            break
        if not chunk:
            break
        output += chunk
        if not interrupted and interrupt_when.search(output.decode(errors="replace")):
            child.send_signal(signal.SIGINT)  # Ctrl-C
            interrupted = True
    os.close(controller)
    return child.wait(timeout=60), output.decode(errors="replace")


def test_terminal_shows_rows_in_a_bar_messages_on_their_own_lines_and_the_next_step(tmp_path):
    source = tmp_path / "visits.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Opportunity", "Owner", "PAN"])
        for n in range(60):
            writer.writerow([DEFAULT_OPPORTUNITIES[n % 6], DEFAULT_USERS[0], f"ABCDE{n:04d}F"])
    with Sandbox(rate_limit=(50, 1.0)) as sandbox:
        env = sandbox_env(sandbox, tmp_path)
        args = ["run", str(source), "--mapping", str(write_yaml(tmp_path, MAPPING)), "--settle-time", "0"]
        # one row a call at 4 calls a second: 15 s of sending, stopped by Ctrl-C once rows went out
        args += ["--batch-size", "1", "--rate-limit", "4/1", "--concurrency", "2"]
        code, output = run_on_a_terminal(args, env, interrupt_when=re.compile(r"/60 rows \(posted [1-9]"))
        stored = len(sandbox.activities())
        host = sandbox.url.removeprefix("http://")
    screen = screen_of(output)
    shown = "\n".join(screen)
    assert code == 130, shown
    assert BAR.search(output), output  # the bar counted rows, posted and failed, with its clock
    messages = [
        f"Checking keys on {host} ...",
        f"Checking keys on {host}: Sandbox User <asha.rao@example.com>, org 10001",
        "stopping: waiting for the calls in flight to answer (Ctrl-C again to stop now)",
    ]
    for message in messages:  # each on a line of its own: never run into the bar, no logger prefix
        assert message in screen, shown
    assert not any("%|" in line for line in screen), shown  # the bar is gone once the run ends
    assert f"  posted    {stored:>7}" in screen, shown
    assert (
        f"{60 - stored} rows not sent: run the same command again (rows already posted are skipped)" in shown
    )


def test_closing_lines_say_how_to_fix_failed_rows_and_feed_the_workbook_back(tmp_path, sandbox, env):
    source = tmp_path / "visits.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Opportunity", "Owner", "PAN"])
        writer.writerow([DEFAULT_OPPORTUNITIES[0], DEFAULT_USERS[0], "ABCDE0001F"])
        writer.writerow([DEFAULT_OPPORTUNITIES[0], "not an email", "ABCDE0002F"])
    mapping = write_yaml(tmp_path, MAPPING)
    result = run_cli("run", source, "--mapping", mapping, "--settle-time", "0", "--no-progress", env=env)
    assert result.code == 1, result.output
    workbook = tmp_path / "visits.errors.xlsx"
    assert (
        f"1 row failed: fix it in {workbook} and run it as the input: "
        f"lsq-import run {workbook} --mapping {mapping}\n"
    ) in result.out
    assert "not sent" not in result.out  # nothing left unsent: no advice to run again
