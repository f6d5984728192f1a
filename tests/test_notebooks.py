"""Executes notebooks/quickstart.ipynb with small settings (FACERNET_NOTEBOOK_QUICK=1) via nbclient."""
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_quickstart_notebook_runs(tmp_path, execute_notebook):
  notebook = REPO / 'notebooks' / 'quickstart.ipynb'
  nb = execute_notebook(notebook, {
      'FACERNET_NOTEBOOK_QUICK': '1',
      'FACERNET_NOTEBOOK_WORKDIR': str(tmp_path / 'work'),
      'FACERNET_NOTEBOOK_DATA_DIR': str(tmp_path / 'tfds'),
      'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
  }, cwd=notebook.parent)
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert not [o for o in outputs if o.get('output_type') == 'error']
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 2  # The inputs figure and the input / render / overlay figure.
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'NME %' in text and (tmp_path / 'work' / 'config.json').is_file()
