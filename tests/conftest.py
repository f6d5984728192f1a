"""Test set-up: simulate 8 CPU devices before JAX starts, share one compilation cache, and locate
../shared/data."""
import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Small LAPACK calls are 20-50x slower with threaded OpenBLAS on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# One persistent XLA compilation cache for this test session, new each session and removed at its
# end, inherited by the CLI subprocesses: the train and eval steps of configs/test.py, which many
# tests build, compile once. Tests that need their own cache set JAX_COMPILATION_CACHE_DIR themselves.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="facernet_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
  """Path to ../shared/data, or skip with the reason when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real public test data not found at {SHARED_DATA} (only present in the project workspace)")
  return SHARED_DATA


def _execute_notebook(path, env, cwd, timeout=900):
  """Runs the notebook at `path` with nbclient in `cwd`, `env` added to the kernel's environment."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(path, as_version=4)
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # The kernel inherits this process's environment.
  try:
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb


@pytest.fixture
def execute_notebook():
  """execute_notebook(path, env, cwd, timeout=900) -> the executed notebook (nbformat)."""
  return _execute_notebook
