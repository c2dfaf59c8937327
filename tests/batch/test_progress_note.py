"""A line said while the progress bar is drawn (a failed item, a Ctrl-C notice) gets a line of
its own, and the bar comes back under it."""

from __future__ import annotations

import io

from aily_async.batch import BatchProgress, ProgressBar


def snapshot(done: int) -> BatchProgress:
    return BatchProgress(
        name="runs",
        total=10,
        succeeded=done,
        failed=0,
        skipped=0,
        in_flight=2,
        elapsed=1.0,
        rate=1.0,
        eta=None,
    )


def test_a_note_clears_the_bar_and_the_bar_is_redrawn_at_once() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, mode="tty", refresh=60.0)
    bar.update(snapshot(1))
    bar.note("aily batch: line 3 failed")
    bar.update(snapshot(2))  # within the refresh interval, yet drawn: the note erased the bar
    text = stream.getvalue()
    assert "\r\x1b[2Kaily batch: line 3 failed\n" in text
    assert text.rstrip().endswith("2/10 done, 2 in flight, 1.0/s")


def test_a_note_in_a_log_is_a_plain_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, mode="plain")
    bar.note("hello")
    assert stream.getvalue() == "hello\n"
