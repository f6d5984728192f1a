"""The default run is deterministic given its seed on one machine (docs/training.md, Reproducibility):
two dataset builds hold identical examples, two short trainings identical losses and parameters."""
import glob
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from facernet_jax import input_pipeline
from facernet_jax import run_report
from facernet_jax import train
from facernet_jax.configs import test as test_config
from facernet_jax.data import synthetic_faces


def _config(data_dir):
  config = test_config.get_config()
  config.dataset.data_dir = str(data_dir)
  config.num_train_steps, config.log_every_steps = 2, 1
  config.eval_every_steps = config.image_every_steps = 0
  config.final_test = False
  return config


def _records(builder):
  """{file name: [raw record bytes]} of a built dataset."""
  return {os.path.basename(p): [r.numpy() for r in tf.data.TFRecordDataset(p)]
          for p in sorted(glob.glob(os.path.join(builder.data_dir, '*.tfrecord*')))}


def test_two_dataset_builds_hold_identical_examples(tmp_path):
  values = input_pipeline.synthetic_dataset_config(_config(tmp_path))
  a = _records(synthetic_faces.prepare_synthetic_faces(str(tmp_path / 'a'), values))
  b = _records(synthetic_faces.prepare_synthetic_faces(str(tmp_path / 'b'), values))
  assert sorted(a) == sorted(b) and len(a) == 3
  for name in a:
    assert len(a[name]) == len(b[name]) > 0
    for ra, rb in zip(a[name], b[name]):
      ea, eb = tf.train.Example.FromString(ra), tf.train.Example.FromString(rb)
      # Same features, bit for bit (protobuf may order the feature map differently in the file).
      assert ea.SerializeToString(deterministic=True) == eb.SerializeToString(deterministic=True)
      for key in ('image', 'landmarks', 'yaw'):
        assert ea.features.feature[key] == eb.features.feature[key], key


@pytest.mark.slow
def test_two_short_runs_are_bit_identical(tmp_path):
  old_cache = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'xla_cache'))  # compile once
  try:
    runs = []
    for name in ('a', 'b'):
      config = _config(tmp_path / 'tfds')
      state, _ = train.train_and_evaluate(config, str(tmp_path / name))
      runs.append((jax.device_get(state.params), run_report.read_scalars(str(tmp_path / name))))
  finally:
    jax.config.update('jax_compilation_cache_dir', old_cache)
  (params_a, logs_a), (params_b, logs_b) = runs
  np.testing.assert_array_equal(logs_a['train/loss'][0], [1, 2])
  for tag in ('train/loss', 'train/loss_land', 'train/grad_norm'):
    np.testing.assert_array_equal(logs_a[tag][1], logs_b[tag][1], err_msg=tag)
  leaves_a = jax.tree_util.tree_leaves_with_path(params_a)
  leaves_b = jax.tree_util.tree_leaves(params_b)
  assert len(leaves_a) == len(leaves_b) > 10
  for (path, x), y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
  # The steps changed the parameters (the test would pass trivially on an untouched state).
  init, _ = train.initialized(train.init_rng(config), config, *train.create_networks(config))
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(init['network']),
                                                      jax.tree_util.tree_leaves(params_a['network'])))


@pytest.mark.parametrize('flag', ['--xla_cpu_max_isa=AVX2', '--xla_cpu_multi_thread_eigen=false'])
def test_documented_xla_flags_exist(flag):
  """docs/training.md names these XLA:CPU flags; an unknown flag would abort the process at start."""
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', 'import jax.numpy as jnp; print(float(jnp.ones(3).sum()))'],
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == '3.0', out.stderr[-2000:]
