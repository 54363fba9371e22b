"""``experiments/results.sh`` (``make results``): it parses, and an unknown section is a one-line error."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "results.sh")


def test_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_unknown_section_is_refused_before_anything_runs():
    done = subprocess.run(["bash", SCRIPT, "99"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == "results.sh: no section 99 (have 1, 2, 4-15)"


def test_every_copied_figure_is_in_the_results_page():
    """Each figure the script copies to docs/figures is one docs/results.md shows."""
    with open(SCRIPT) as f:
        names = re.findall(r"^\s*copy \S+ (\S+\.png)", f.read(), flags=re.M)
    copied = {name.replace("$optimizer", o) for name in names for o in ("sgd", "adafactor")}
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        page = f.read()
    assert copied and all(f"figures/{name}" in page for name in copied), sorted(
        name for name in copied if f"figures/{name}" not in page
    )
