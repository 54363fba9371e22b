"""Package layering, read from the source: the optax layer stands alone, and no private module is shared.

``paramlab/optim`` may import only the standard library, numpy, jax, optax, chex and itself; no package
imports another package's private (underscore) module or name.
"""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "paramlab"
OPTIM_ALLOWED = {"jax", "jaxlib", "optax", "chex", "numpy", "paramlab.optim"}


def _imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` for every import statement of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _package(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).parts[0]


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", sorted(ROOT.joinpath("optim").rglob("*.py")), ids=lambda p: p.name)
def test_optim_imports_only_jax_optax_chex(path):
    for module, _ in _imports(path):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        assert any(module == ok or module.startswith(ok + ".") for ok in OPTIM_ALLOWED), (
            f"{path.relative_to(ROOT.parent)} imports {module}"
        )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_imports_across_packages(path):
    own = _package(path)
    for module, names in _imports(path):
        parts = module.split(".")
        if parts[0] != "paramlab" or len(parts) < 2 or parts[1] == own:
            continue
        private = [p for p in parts[1:] if p.startswith("_")] + [n for n in names if n.startswith("_")]
        assert not private, f"{path.relative_to(ROOT.parent)} imports private {module}: {private}"
