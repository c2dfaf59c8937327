"""In Jupyter, for real: a notebook executed by nbclient on an IPython kernel (this venv's
python, through a kernelspec the test writes) with top-level await, the client cell run twice,
a batch with progress, and reprs. The saved outputs show no "Unclosed client session" text in
any cell, one progress output that was updated in place, and readable reprs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SETUP = """\
import gc
from aily_async import AilyClient
from aily_async.testing import FakeAily, RunPlan

APP = "spring_449d72db2f__c"
fake = FakeAily(run_script=RunPlan(queued=0.0, duration=0.05))
await fake.start()"""

CLIENT = """\
client = AilyClient("cli_notebook", "secret", base_url=fake.url, limiter=None,
                    poll_interval=0.05)
session = await client.sessions.create()
session"""

UNRELATED = """\
gc.collect()  # the client dropped by the re-run is collected here, in an unrelated cell
total = sum(range(10))
total"""

BATCH = """\
rows = [{"query": f"row {n}"} for n in range(40)]
results = await client.batch.skills(APP, "skill_echo", rows, concurrency=4, progress=True)
results[0]"""

RUN = """\
handle = await client.runs.create(session.id, app_id=APP)
run = await handle
run"""

CLOSE = """\
gc.collect()
await client.close()
await fake.close()
"closed\""""


def kernelspec(where: Path) -> str:
    """A kernelspec for this interpreter (so a fresh venv needs no ``ipykernel install``)."""
    name = "aily-async-test"
    spec = where / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "aily-async test", "language": "python"}),
        encoding="utf-8",
    )
    return name


def texts(output: Any) -> str:
    """All the text an output shows (stream text, text/plain, text/html, tracebacks)."""
    if output.output_type == "stream":
        return str(output.text)
    if output.output_type == "error":
        return "\n".join(output.traceback)
    return "\n".join(str(v) for v in output.get("data", {}).values())


@pytest.mark.timeout(120)
def test_a_notebook_runs_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client cell run twice, then an unrelated cell collects the dropped client: no
    "Unclosed" text anywhere; the batch's progress is one display output showing the end;
    the session, batch result and run have short reprs."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    name = kernelspec(tmp_path)
    cells = [SETUP, CLIENT, UNRELATED, BATCH, RUN, CLOSE]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(
        nb, kernel_name=name, timeout=60, resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        # Run in the order a user would: the client cell twice (a re-run), then the rest.
        for index in (0, 1, 1, 2, 3, 4, 5):
            client.execute_cell(nb.cells[index], index)
    nbformat.write(nb, tmp_path / "saved.ipynb")
    saved = nbformat.read(tmp_path / "saved.ipynb", as_version=4)

    every = [texts(output) for cell in saved.cells for output in cell.outputs]
    assert not [text for text in every if "Unclosed" in text or "unclosed" in text], every
    assert not [o for c in saved.cells for o in c.outputs if o.output_type == "error"]

    _, client_cell, unrelated, batch, run, close = saved.cells
    assert [o.output_type for o in unrelated.outputs] == ["execute_result"]
    assert "Session(id='session_" in texts(client_cell.outputs[-1])

    kinds = [o.output_type for o in batch.outputs]
    assert kinds == ["display_data", "execute_result"], kinds  # one progress output, no stream
    progress = batch.outputs[0].data
    assert "40/40 done" in progress["text/plain"]
    assert "took" in progress["text/plain"]
    assert "<progress" in progress["text/html"]
    assert batch.outputs[1].data["text/plain"].startswith("<BatchResult #0 ok ")

    shown = run.outputs[-1].data["text/plain"]
    assert shown.startswith("Run(id='run_")
    assert "COMPLETED" in shown
    assert close.outputs[-1].data["text/plain"] == "'closed'"
