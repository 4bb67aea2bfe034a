"""The notebooks of examples/ run top to bottom against a real gateway
(nbclient and an ipykernel from the test venv); any failing cell fails."""

import os
from pathlib import Path

import pytest

from sluice_fixtures import PASSWORD, ROOT, USER


@pytest.mark.parametrize("notebook", sorted((ROOT / "examples").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(gateway, notebook: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    env = {"SLUICE_FLIGHT_URI": gateway.flight_uri(), "SLUICE_USER": USER, "SLUICE_PASSWORD": PASSWORD}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "100000 orders" in text and "matching orders" in text
