"""The progress bar on a real terminal (a pseudo-terminal 50 columns wide, with standard
output sent elsewhere): every line it draws fits the terminal, and Ctrl-C leaves a last line
saying "interrupted"."""

from __future__ import annotations

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
import time

import pytest

SCRIPT = """
import asyncio, sys
from aily_async import AilyClient
from aily_async.testing import FakeAily

async def slow(request):
    await asyncio.sleep(0.05)
    return "{}"

async def main():
    async with FakeAily(skill_handler=slow) as fake:
        async with AilyClient("cli_a", "s", base_url=fake.url, limiter=None) as client:
            rows = [{"query": str(n)} for n in range(10_000)]
            batch = client.batch.skills("spring_x__c", "skill_echo", rows, concurrency=4,
                                        progress=True, grace=1.0)
            print("started", flush=True)
            await batch

try:
    asyncio.run(main())
except KeyboardInterrupt:
    sys.exit(130)
"""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_bar_fits_the_terminal_and_says_interrupted() -> None:
    """A batch drawn on a 50-column terminal: no drawn line is wider than 49 columns; after
    SIGINT the last line says "interrupted after ..."."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,  # not the terminal: the width must be asked of stderr's
        stderr=slave,
        env=env,
    )
    os.close(slave)
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    screen = b""

    def read(until: float) -> None:
        nonlocal screen
        while time.monotonic() < until:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    return
                if not chunk:
                    return
                screen += chunk
            elif process.poll() is not None:
                return

    read(time.monotonic() + 1.5)  # a few redraws
    process.send_signal(signal.SIGINT)
    read(time.monotonic() + 15)
    assert process.wait(15) == 130
    process.stdout.close()
    os.close(master)
    text = ANSI.sub("", screen.decode("utf-8", "replace"))
    lines = [line for line in re.split(r"[\r\n]", text) if line.strip()]
    assert len(lines) >= 3, text
    assert all(len(line) <= 49 for line in lines), [line for line in lines if len(line) > 49]
    assert "interrupted after" in lines[-1], lines[-3:]
