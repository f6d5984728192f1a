"""Executes notebooks/quickstart.ipynb with small settings (FACERNET_NOTEBOOK_QUICK=1) via nbclient."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _execute(path, env, tmp_path, timeout=900):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  nb = nbformat.read(path, as_version=4)
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # The kernel inherits this process's environment.
  try:
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name='python3',
                                     resources={'metadata': {'path': str(path.parent)}})
    client.execute()
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb


def test_quickstart_notebook_runs(tmp_path):
  nb = _execute(REPO / 'notebooks' / 'quickstart.ipynb', {
      'FACERNET_NOTEBOOK_QUICK': '1',
      'FACERNET_NOTEBOOK_WORKDIR': str(tmp_path / 'work'),
      'FACERNET_NOTEBOOK_DATA_DIR': str(tmp_path / 'tfds'),
      'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
  }, tmp_path)
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert not [o for o in outputs if o.get('output_type') == 'error']
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 2  # The inputs figure and the input / render / overlay figure.
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'NME %' in text and (tmp_path / 'work' / 'config.json').is_file()
