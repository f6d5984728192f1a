"""Tests of facernet_jax.train: configs, data parallelism (1 vs 8 devices, pmap vs jit), the
non-finite guard, the Eq 13 epoch state, checkpoints and load_for_inference.

The process-level tests (kill -9 + resume, two processes on loopback) are in test_train_cli.py.
A tiny network keeps compile time down; compiled steps are shared through module fixtures.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facernet_jax import train
from facernet_jax.configs import ablation
from facernet_jax.configs import default
from facernet_jax.configs import paper
from facernet_jax.configs import test as test_config

GLOBAL_BATCH = 8
STEPS_PER_EPOCH = 2


def _flat(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


# ----------------------------------------------------------------------------- configs

def test_paper_config_has_the_papers_values():
  c = paper.get_config()
  assert c.image_size == 64 and c.batch_size == 4 and c.learning_rate == 1e-3
  assert c.optimizer == 'adam' and c.lr_schedule == 'constant'
  assert dict(c.loss_weights) == {'land': 400.0, 'land_error': 2000.0, 'photo': 100.0,
                                  'ssim': 2.0, 'smooth': 50.0, 'reg': 1.0}
  assert c.land_error_start_epoch == 5
  assert c.dataset.name == 'w300lp+celeba68' and c.dataset.augment


@pytest.mark.parametrize('variant', ablation.VARIANTS)
def test_each_ablation_changes_exactly_one_setting(variant):
  base = _flat(ablation.base_config().to_dict())
  changed = _flat(ablation.get_config(variant).to_dict())
  diff = {k for k in set(base) | set(changed) if base.get(k) != changed.get(k)}
  expected = {
      'no_attention': {'model.use_attention'}, 'no_multiscale': {'model.use_multiscale'},
      'no_decoder': {'model.use_decoder'}, 'frozen_3dmm': {'trainable_bases'},
  }.get(variant, {f'loss_weights.{variant[3:]}'})
  assert diff == expected | {'ablation'}
  for key in expected:
    assert changed[key] in (False, 0.0)


def test_ablation_on_paper_base_and_bad_variant():
  c = ablation.get_config('paper,no_smooth')
  assert c.batch_size == 4 and c.loss_weights.smooth == 0.0 and c.loss_weights.photo == 100.0
  with pytest.raises(ValueError, match='unknown ablation'):
    ablation.get_config('no_such_thing')


def test_learning_rate_schedules():
  c = default.get_config()
  c.learning_rate, c.warmup_steps, c.lr_schedule = 1e-3, 10, 'cosine'
  fn = train.create_learning_rate_fn(c, 110)
  assert float(fn(0)) == 0.0
  np.testing.assert_allclose(float(fn(5)), 0.5e-3, rtol=1e-6)
  np.testing.assert_allclose(float(fn(10)), 1e-3, rtol=1e-6)
  # Cosine from 1e-3 to 1e-5 over the remaining 100 steps: half way = (1e-3 + 1e-5) / 2.
  np.testing.assert_allclose(float(fn(60)), (1e-3 + 1e-5) / 2, rtol=1e-5)
  c.lr_schedule, c.warmup_steps = 'constant', 0
  assert float(train.create_learning_rate_fn(c, 100)(50)) == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- steps

def _config():
  """The tiny config with plain SGD: Adam's first step is lr * g / (|g| + eps), i.e. about
  lr * sign(g), so float-rounding noise in near-zero gradients (different reduction orders on 1 and
  8 devices) would flip whole lr-sized steps; SGD's update is linear in the gradient, which is what
  the parity test compares. (Adam itself runs in the CLI tests.)"""
  config = test_config.get_config()
  config.optimizer = 'sgd'
  config.learning_rate = 1e-7  # |grad| up to ~1e2 at init: updates ~1e-5, above float32 rounding.
  return config


def _batches(config, n, seed=0):
  """`n` random global batches (GLOBAL_BATCH, ...) with landmarks near the projected mean face."""
  rng = np.random.default_rng(seed)
  s = config.image_size
  out = []
  for _ in range(n):
    out.append({
        'image': rng.uniform(0, 1, (GLOBAL_BATCH, s, s, 3)).astype(np.float32),
        'landmarks': rng.uniform(0.3 * s, 0.7 * s, (GLOBAL_BATCH, 68, 2)).astype(np.float32)})
  return out


def _per_device(batch, devices):
  return {k: v.reshape((devices, -1) + v.shape[1:]) for k, v in batch.items()}


class _Runner:
  """Compiled steps of one parallel set-up, reused by several tests."""

  def __init__(self, config, mode, devices):
    self.config = config
    self.parallel = train.DataParallel(config, devices=devices, mode=mode)
    self.p_train, self.p_eval, self.tx = train.make_steps(config, self.parallel, STEPS_PER_EPOCH)
    network, decoder = train.create_networks(config, bn_axis_name=self.parallel.bn_axis_name)
    self.state0 = train.create_train_state(train.init_rng(config), config, network, decoder,
                                           self.tx)

  def run(self, batches, state=None):
    """Returns (host state, list of host metrics) after one step per batch."""
    state = self.parallel.put_state(self.state0 if state is None else state)
    metrics = []
    for b in batches:
      b = _per_device(b, len(self.parallel.local_devices))
      state, m = self.p_train(state, self.parallel.put_batch(b))
      metrics.append(self.parallel.get_metrics(m))
    return self.parallel.get_state(state), metrics


@pytest.fixture(scope='module')
def pmap8():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 host devices'
  return _Runner(_config(), 'pmap', jax.devices()[:8])


@pytest.fixture(scope='module')
def pmap1():
  return _Runner(_config(), 'pmap', jax.devices()[:1])


@pytest.fixture(scope='module')
def jit8():
  return _Runner(_config(), 'jit', jax.devices()[:8])


def test_pmap_spans_the_devices_of_every_process():
  """pmap is given all devices, not only this process's: with only the local ones each process of a
  multi-host run ran its own pmap and averaged the gradients of its own examples only."""
  parallel = train.DataParallel(_config(), mode='pmap')
  assert parallel.devices == jax.devices()
  assert parallel.local_devices == jax.local_devices()


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_one_device_and_eight_devices_give_the_same_updates(pmap1, pmap8, jit8):
  """The same global batch gives the same loss, params and batch statistics on 1 device (the
  reference: plain full-batch computation) and data-parallel on 8 (pmap and jit + NamedSharding).
  Synchronised BatchNorm is what makes this hold: per-device statistics of 1 example would differ."""
  batches = _batches(pmap1.config, 2)
  ref_state, ref_metrics = pmap1.run(batches)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])
  ref_update = flat(ref_state.params) - flat(pmap1.state0.params)
  assert np.abs(ref_update).max() > 0  # The parameters moved.
  for runner in (pmap8, jit8):
    state, metrics = runner.run(batches)
    for m, r in zip(metrics, ref_metrics):
      np.testing.assert_allclose(m['loss'], r['loss'], rtol=2e-5)
      assert m['finite'] == 1.0
    update = flat(state.params) - flat(runner.state0.params)
    # Reduction order differs on 1 and 8 devices, and float32 rounding is amplified where the true
    # gradient is (near) zero: a bias right before a BatchNorm has none (the next BatchNorm removes
    # it), and the first layers' gradients pass through several BatchNorm backward passes, each of
    # which subtracts the batch mean. Measured: global relative L2 difference of the update 9e-4,
    # single entries up to ~1 % of the largest update. So each entry may be off by 0.1 % of itself,
    # 2 % of the largest update and an ulp of p (p + update is rounded); a real parity bug (a
    # missing gradient mean: 8x; per-device BatchNorm statistics) is far outside that.
    tol = (1e-3 * np.abs(ref_update) + 2e-2 * np.abs(ref_update).max()
           + 2 * np.spacing(np.abs(flat(ref_state.params))))
    bad = np.abs(update - ref_update) > tol
    assert not bad.any(), (np.flatnonzero(bad)[:5], update[bad][:5], ref_update[bad][:5])
    assert np.linalg.norm(update - ref_update) < 1e-2 * np.linalg.norm(ref_update)
    _assert_trees_close(state.batch_stats, ref_state.batch_stats, rtol=1e-4, atol=1e-5)
    _assert_trees_close(state.landmark_error, ref_state.landmark_error, rtol=1e-5)
    assert int(state.step) == 2 and int(state.data_position) == 2 * GLOBAL_BATCH


def test_nonfinite_update_is_skipped_and_counted(pmap8):
  good = _batches(pmap8.config, 2, seed=1)
  bad = dict(good[0])
  bad['landmarks'] = bad['landmarks'].copy()
  bad['landmarks'][3, 5, 0] = np.nan  # One bad example on one device poisons the global mean.
  state1, m1 = pmap8.run([good[0]])
  state2, m2 = pmap8.run([bad, bad], state=state1)
  assert [m['finite'] for m in m2] == [0.0, 0.0]
  assert [int(m['nonfinite_consecutive']) for m in m2] == [1, 2]
  assert int(state2.nonfinite['total']) == 2
  # Nothing but the counters and the step / data position moved.
  _assert_trees_close(state2.params, state1.params, rtol=0, atol=0)
  _assert_trees_close(state2.opt_state, state1.opt_state, rtol=0, atol=0)
  _assert_trees_close(state2.batch_stats, state1.batch_stats, rtol=0, atol=0)
  # The second bad step crossed the epoch boundary (step 2): the epoch of good data rolled into
  # e_i, and neither bad batch was accumulated.
  le1, le2 = state1.landmark_error, state2.landmark_error
  assert float(le2.count) == 0.0 and not np.any(le2.error_sum) and int(le2.epoch) == 1
  np.testing.assert_allclose(le2.prev_mean, le1.error_sum / le1.count, rtol=1e-6)
  assert int(state2.step) == 3
  for leaf in jax.tree_util.tree_leaves(state2.params):
    assert np.all(np.isfinite(leaf))
  # A finite step resets the run of skipped updates.
  state3, m3 = pmap8.run([good[1]], state=state2)
  assert m3[0]['finite'] == 1.0 and int(m3[0]['nonfinite_consecutive']) == 0
  assert int(state3.nonfinite['total']) == 2
  with pytest.raises(FloatingPointError, match='consecutive'):
    train.check_nonfinite({'nonfinite_consecutive': 2}, 2, 7)
  train.check_nonfinite({'nonfinite_consecutive': 1}, 2, 7)


def test_landmark_error_state_rolls_over_at_epoch_boundaries(pmap8):
  """Eq 13: per-point errors accumulate over an epoch (STEPS_PER_EPOCH steps) and the finished
  epoch's mean becomes e_i at the boundary."""
  batches = _batches(pmap8.config, 3, seed=2)
  s2, m2 = pmap8.run(batches[:2])
  le = s2.landmark_error
  assert float(le.count) == 2 * GLOBAL_BATCH and int(le.epoch) == 0
  np.testing.assert_allclose(float(np.mean(le.error_sum)) / (2 * GLOBAL_BATCH),
                             np.mean([m['landmark_error'] for m in m2]), rtol=1e-5)
  s3, m3 = pmap8.run(batches[2:], state=s2)
  le3 = s3.landmark_error
  assert int(le3.epoch) == 1 and float(le3.count) == GLOBAL_BATCH
  np.testing.assert_allclose(le3.prev_mean, le.error_sum / le.count, rtol=1e-6)
  assert m2[0]['epoch'] == 0 and m3[0]['epoch'] == 1
  # land_error_start_epoch = 1 in the test config: the term is off in epoch 0, on in epoch 1.
  assert m2[0]['weighted_land_error'] == 0.0 and m3[0]['weighted_land_error'] > 0.0


def test_eval_step_outputs(pmap8):
  config = pmap8.config
  images = _batches(config, 1)[0]['image']
  state = pmap8.parallel.put_state(pmap8.state0)
  out = pmap8.parallel.get_output(pmap8.p_eval(
      *pmap8.parallel.eval_args(state), {'image': _per_device({'image': images}, 8)['image']}))
  s = config.image_size
  assert out['landmarks'].shape == (GLOBAL_BATCH, 68, 2)
  assert out['render'].shape == (GLOBAL_BATCH, s, s, 3)
  assert out['alpha'].shape == (GLOBAL_BATCH, s, s)
  # Near-zero coefficients at init: a mean face near the image centre, covering some pixels.
  assert np.all(np.abs(out['landmarks'].mean(axis=1) - s / 2) < s / 4)
  assert out['alpha'].max() > 0.5


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_roundtrip_and_load_for_inference(pmap8, tmp_path):
  config = pmap8.config
  state, _ = pmap8.run(_batches(config, 1))
  workdir = tmp_path / 'work'
  train.write_config(str(workdir), config)
  manager = train.checkpoint_manager(str(workdir), config)
  train.save_checkpoint(manager, train.state_to_host_dict(state), config)
  manager.wait_until_finished()
  restored = train.restore_latest(manager, pmap8.state0)
  manager.close()
  _assert_trees_close(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state),
                      rtol=0, atol=0)
  assert isinstance(restored, train.TrainState)
  with open(workdir / 'config.json') as f:
    assert json.load(f)['image_size'] == config.image_size
  for path in (workdir, workdir / 'checkpoints' / '1'):
    cfg, variables = train.load_for_inference(path)
    assert cfg.image_size == config.image_size and cfg.model.width == config.model.width
    assert set(variables) == {'params', 'batch_stats'}
    _assert_trees_close(variables['params'], state.params, rtol=0, atol=0)
    _assert_trees_close(variables['batch_stats'], state.batch_stats, rtol=0, atol=0)
  with pytest.raises(FileNotFoundError):
    train.load_for_inference(tmp_path)


def test_refuses_to_checkpoint_nonfinite_params(pmap8, tmp_path):
  host = train.state_to_host_dict(pmap8.state0)
  leaf = host['params']['network']['head']
  key = next(iter(leaf))
  leaf[key] = jax.tree_util.tree_map(lambda x: np.full_like(x, np.nan), leaf[key])
  manager = train.checkpoint_manager(str(tmp_path), pmap8.config)
  with pytest.raises(FloatingPointError):
    train.save_checkpoint(manager, host, pmap8.config)
  manager.close()
  assert manager.latest_step() is None


def test_verdict_line():
  c = default.get_config()
  line = train.verdict(c, {'nme': 3.2, 'psnr': 26.0, 'ssim': 0.9, 'num_images': 500})
  assert 'NME 3.20% <= 3.5%: PASS' in line and 'PSNR 26.00 dB >= 25.0 dB: PASS' in line
  line = train.verdict(c, {'nme': 3.6, 'psnr': 24.0, 'ssim': 0.9, 'num_images': 500})
  assert 'NME 3.60% <= 3.5%: FAIL' in line and 'PSNR 24.00 dB >= 25.0 dB: FAIL' in line
