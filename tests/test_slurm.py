"""The workflow on a real SLURM cluster: a one-node cluster on localhost, through Snakemake's SLURM executor.

Debian's slurm-wlm and munge are installed when missing (CI runs as root
with Debian's archive in reach); the test skips, saying why, where they
cannot be, or where the executor plugin is not installed. The stores must
hold the same numbers as those of a local run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "slurm" / "one_node_cluster.sh"
pytestmark = pytest.mark.workflow
# A run with XRD, indexing and EOS, and one with SAXS: every kind of job but the figures.
RUNS = ("hgte_thz", "nc_saxs")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    if shutil.which("slurmctld") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("SLURM is not installed, and installing it needs root and apt-get")
        out = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            pytest.skip(f"slurm-wlm and munge could not be installed: {out.stderr.strip()[-300:]}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd on localhost needs root")
    folder = tmp_path_factory.mktemp("slurm")
    out = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    yield {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)


def _numbers(path: Path) -> dict[str, np.ndarray]:
    """Every numeric dataset of a store but its provenance."""
    out = {}
    with h5py.File(path) as h5:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiub" and "provenance" not in name:
                out[name] = obj[()]
        h5.visititems(visit)
    return out


def test_the_pipeline_through_slurm_equals_a_local_run(cluster, sample_results, tmp_path):
    for name in ("Snakefile",):
        shutil.copy(ROOT / name, tmp_path)
    for folder in ("workflow", "config", "data-sample"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    # The two stores compared, not the figures and the third run: every job is an
    # sbatch job with its own start-up and status polls (all 36 took 4 minutes).
    targets = [f"results/{run}.h5" for run in RUNS]
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "--workflow-profile", "workflow/profiles/slurm", "--jobs", "4",
         # No slurmdbd on this cluster: job states from squeue, no account.
         "--slurm-no-account", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
         # one squeue round every 2 s, not 10: each level of the DAG waits for one
         "--seconds-between-status-checks", "2",
         # The profile asks 4 cores for an integration job; this node has 2.
         "--set-threads", "integrate=2"],
        cwd=tmp_path, env=cluster, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "slurm" in (out.stdout + out.stderr).lower()
    local, _ = sample_results
    for run in RUNS:
        expected, got = _numbers(local / f"{run}.h5"), _numbers(tmp_path / "results" / f"{run}.h5")
        assert set(got) == set(expected), run
        for name, values in expected.items():
            np.testing.assert_array_equal(got[name], values, err_msg=f"{run}: {name}")
