"""The notebooks in colabs/ are stored clean, install paramlab only in Colab, and run end to end.

Each notebook runs at its stored ``TINY = True`` sizes in a fresh Jupyter kernel started from this
interpreter (a temporary kernelspec whose ``argv`` is ``sys.executable``, found through
``JUPYTER_PATH``), with its working directory in ``tmp_path``, under a deadline of
``NOTEBOOK_TIMEOUT_S`` for the whole notebook. The kernel compiles at XLA's backend optimisation
level 0: at these sizes compiling costs more than running, and level 0 compiles faster.
"""

import json
import os
import pathlib
import sys
import time
import types

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"
NOTEBOOKS = ("quickstart.ipynb", "coord_check.ipynb", "lr_transfer.ipynb", "depth.ipynb")
NOTEBOOK_TIMEOUT_S = 120
KERNEL_NAME = "paramlab-tests"
PLACEHOLDER_URL = '"https://github.com/<owner>/paramlab"'


def read(name: str):
    return nbformat.read(COLABS / name, as_version=4)


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def jupyter_dirs(tmp_path_factory) -> dict[str, str]:
    """Environment of the notebook kernels: a private kernelspec running ``sys.executable``."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "data" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "paramlab tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    (root / "runtime").mkdir()
    (root / "ipython").mkdir()
    return {
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip(),
        "JUPYTER_PATH": str(root / "data"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "IPYTHONDIR": str(root / "ipython"),
    }


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name):
    nb = read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(code_cells(nb)):
        assert cell.outputs == [], f"{name}: code cell {i} has stored outputs"
        assert cell.execution_count is None, f"{name}: code cell {i} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_setup_and_parameters_cells(name):
    cells = code_cells(read(name))
    assert "REPO_URL = " in cells[0].source and '"google.colab" in sys.modules' in cells[0].source
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    assert "TINY = True" in tagged[0].source


def run_setup_cell(source: str, monkeypatch) -> list[list[str]]:
    """Execute a setup cell as if in Colab; returns the commands it would have run."""
    import subprocess

    commands = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: commands.append(cmd))
    exec(compile(source, "<setup cell>", "exec"), {})
    return commands


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_setup_cell_installs_from_repo_url_in_colab(name, monkeypatch):
    source = code_cells(read(name))[0].source
    assert PLACEHOLDER_URL in source
    with pytest.raises(ValueError, match="REPO_URL"):
        run_setup_cell(source, monkeypatch)
    url = "https://example.invalid/someone/paramlab"
    commands = run_setup_cell(source.replace(PLACEHOLDER_URL, repr(url)), monkeypatch)
    assert commands == [[sys.executable, "-m", "pip", "install", "-q", f"git+{url}@main"]]


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    import subprocess

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("installed outside Colab"))
    for name in NOTEBOOKS:
        exec(compile(code_cells(read(name))[0].source, name, "exec"), {})


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_end_to_end(name, jupyter_dirs, tmp_path, monkeypatch):
    for key, value in jupyter_dirs.items():
        monkeypatch.setenv(key, value)
    nb = read(name)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError (with the traceback) if a cell fails
    outputs = [out for cell in code_cells(nb) for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert images, f"{name} displayed no plot"
    assert nb.cells[-1].outputs[0].text.strip() == sys.executable
    assert not list(tmp_path.iterdir()), f"{name} wrote files into its working directory"
