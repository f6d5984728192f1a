"""Tests of facernet_jax.train: configs, data parallelism (1 vs 8 devices, pmap vs jit), the
non-finite guard, the Eq 13 epoch state, checkpoints and load_for_inference, the loop (checkpoint
before evaluation, host syncs, NaN stop), the optimiser layout, config validation and resume checks.

The process-level tests (kill -9 + resume, two processes on loopback) are in test_train_cli.py.
A tiny network keeps compile time down; compiled steps are shared through module fixtures.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facernet_jax import input_pipeline
from facernet_jax import train
from facernet_jax import train_eval
from facernet_jax.configs import ablation
from facernet_jax.configs import default
from facernet_jax.configs import paper
from facernet_jax.configs import test as test_config
from facernet_jax.training import validate

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


def test_pmap_spans_the_devices_of_every_process(monkeypatch):
  """pmap is given all devices, not only this process's: with only the local ones each process of a
  multi-host run ran its own pmap and averaged the gradients of its own examples only. Two processes
  are simulated (this one owns 4 of the 8 devices), so a pmap given jax.local_devices() fails here."""
  devices = jax.devices()[:8]
  monkeypatch.setattr(jax, 'local_devices', lambda *a, **k: devices[:4])
  monkeypatch.setattr(jax, 'local_device_count', lambda *a, **k: 4)
  monkeypatch.setattr(jax, 'process_count', lambda *a, **k: 2)
  monkeypatch.setattr(jax, 'devices', lambda *a, **k: devices)
  seen = {}

  def fake_pmap(fn, *args, devices=None, **kwargs):
    seen['devices'] = devices
    return fn
  monkeypatch.setattr(jax, 'pmap', fake_pmap)
  parallel = train.DataParallel(_config(), mode='pmap')
  parallel.compile_train_step(lambda state, batch, axis_name=None: None)
  assert list(seen['devices']) == devices
  parallel.compile_eval_step(lambda params, batch_stats, batch: None)
  assert list(seen['devices']) == devices
  # Batches and the replicated state live on this process's devices only.
  assert parallel.local_devices == devices[:4]
  assert set(parallel.local_sharding.device_set) == set(devices[:4])


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


# ----------------------------------------------------------------------------- the loop

@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The tiny synthetic TFDS dataset of the test config, built once."""
  from facernet_jax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
  d = str(tmp_path_factory.mktemp('tfds'))
  synthetic_faces.prepare_synthetic_faces(d, input_pipeline.synthetic_dataset_config(
      test_config.get_config()))
  return d


def _loop_config(data_dir, **fields):
  c = test_config.get_config()
  c.dataset.data_dir = data_dir
  c.final_test, c.image_every_steps, c.async_checkpointing = False, 0, False
  for k, v in fields.items():
    c[k] = v
  return c


def _steps_saved(workdir):
  d = workdir / 'checkpoints'
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())


def test_checkpoint_is_saved_before_evaluation(data_dir, tmp_path, monkeypatch):
  """A crash in evaluation keeps the checkpoint of that step (issue 16 (c))."""
  calls = []

  def crashing_evaluate(*args, **kwargs):
    calls.append(_steps_saved(tmp_path / 'w'))
    raise RuntimeError('evaluation crashed')
  monkeypatch.setattr(train_eval, 'run_evaluation', crashing_evaluate)
  config = _loop_config(data_dir, num_train_steps=4, checkpoint_every_steps=4, eval_every_steps=4,
                        log_every_steps=4)
  with pytest.raises(RuntimeError, match='evaluation crashed'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert calls == [[4]] and _steps_saved(tmp_path / 'w') == [4]


def test_loop_syncs_only_at_log_and_checkpoint_steps_and_stops_on_nan(data_dir, tmp_path,
                                                                       monkeypatch):
  """Metrics are fetched only at log / checkpoint steps (not every step); a run of non-finite
  updates is still caught there, stops the run with the limit named, and the last good checkpoint
  (taken before the bad batches) survives."""
  real_iterator = input_pipeline.create_iterator

  def poisoned(*args, **kwargs):
    for i, batch in enumerate(real_iterator(*args, **kwargs)):
      if i >= 2:  # steps 3, 4, ...: one NaN landmark
        batch = dict(batch, landmarks=np.array(batch['landmarks'], copy=True))
        batch['landmarks'][0, 0, 0, 0] = np.nan
      yield batch
  monkeypatch.setattr(input_pipeline, 'create_iterator', poisoned)
  steps_run, fetched_at = [0], []
  real_compile, real_get = train.DataParallel.compile_train_step, train.DataParallel.get_metrics

  def counting_compile(self, fn):
    compiled = real_compile(self, fn)
    def run(*args):
      steps_run[0] += 1
      return compiled(*args)
    return run

  def recording_get(self, metrics):
    fetched_at.append(steps_run[0])
    return real_get(self, metrics)
  monkeypatch.setattr(train.DataParallel, 'compile_train_step', counting_compile)
  monkeypatch.setattr(train.DataParallel, 'get_metrics', recording_get)
  config = _loop_config(data_dir, num_train_steps=12, checkpoint_every_steps=2, log_every_steps=4,
                        eval_every_steps=0, max_consecutive_nonfinite=2)
  with pytest.raises(FloatingPointError, match=r'stopping at step 4: 2 consecutive .*'
                                               r'max_consecutive_nonfinite=2'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert fetched_at == [2, 2, 4, 4]  # the metrics of steps 1-2 at step 2, of 3-4 at step 4
  assert _steps_saved(tmp_path / 'w') == [2]
  _, variables = train.load_for_inference(tmp_path / 'w')
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(variables))


# ----------------------------------------------------------------------------- optimiser layout

def _adam_state(opt_state):
  is_adam = lambda x: type(x).__name__ == 'ScaleByAdamState'
  return next(x for x in jax.tree_util.tree_leaves(opt_state, is_leaf=is_adam) if is_adam(x))


def test_adam_state_is_per_leaf_and_the_3dmm_step_is_scaled():
  """Adam's moments have the parameters' own tree and shapes (not one flattened vector), so the
  3DMM layer's FC_shape / FC_texture can be donated and sharded on their own; and its first step
  matches the hand-computed value: lr * scale * g / (|g| + eps) ~ lr * scale, per entry."""
  config = test_config.get_config()  # Adam, lr 2e-3
  config.decoder_lr_scale = 1e-3
  parallel = train.DataParallel(config, devices=jax.devices()[:1], mode='jit')
  p_train, _, tx = train.make_steps(config, parallel, STEPS_PER_EPOCH)
  network, decoder = train.create_networks(config)
  state0 = train.create_train_state(train.init_rng(config), config, network, decoder, tx)
  adam = _adam_state(state0.opt_state)
  assert (jax.tree_util.tree_structure(adam.mu) == jax.tree_util.tree_structure(state0.params))
  assert adam.mu['decoder']['morphable_model']['FC_shape'].shape == (
      state0.params['decoder']['morphable_model']['FC_shape'].shape)
  state, _ = p_train(parallel.put_state(state0), parallel.put_batch(
      _per_device(_batches(config, 1)[0], 1)))
  state = parallel.get_state(state)
  g = np.asarray(_adam_state(state.opt_state).mu['decoder']['morphable_model']['FC_shape']) / 0.1  # (1-b1) g
  p0 = np.asarray(state0.params['decoder']['morphable_model']['FC_shape'])
  step = np.asarray(state.params['decoder']['morphable_model']['FC_shape']) - p0
  expected = -2e-3 * 1e-3 * g / (np.abs(g) + 1e-8)
  big = np.abs(g) > 1e-4
  assert big.sum() > 100
  # p + step is rounded to float32: allow an ulp of p on top of 0.1 % of the step.
  tol = 1e-3 * np.abs(expected) + 2 * np.spacing(np.abs(p0).astype(np.float32))
  assert np.all(np.abs(step - expected)[big] <= tol[big])
  head = jax.tree_util.tree_leaves(state.params['network'])[0] - jax.tree_util.tree_leaves(
      state0.params['network'])[0]
  assert 1e-3 < np.abs(head).max() <= 2e-3 * 1.001  # Network steps are not scaled.


# ----------------------------------------------------------------------------- config checks

def _bad(field, value):
  c = test_config.get_config()
  node = c
  *parents, last = field.split('.')
  for part in parents:
    node = node[part]
  with node.ignore_type():
    node[last] = value
  return c


# Each numeric and choice field with a value outside its range (and the text the error must say).
BAD_VALUES = [
    ('seed', -1), ('image_size', 4), ('image_size', 32.5), ('face_model.resolution', 2),
    ('face_model.seed', -3), ('face_model.source', ''), ('trainable_bases', 'yes'),
    ('model.name', 'vgg'), ('model.width', 0.0), ('model.width', -1.0), ('model.use_attention', 1),
    ('model.use_multiscale', None), ('model.use_decoder', 'no'), ('model.coord_channels', 2),
    ('model.appearance_branch', 0), ('model.attention_reduction', 0),
    ('model.output_scales.rotation', 0.0), ('raster.mode', 'wire'), ('raster.faces_per_pixel', 0),
    ('raster.sigma', -0.1), ('raster.gamma', 0.0), ('raster.znear', 0.0), ('raster.zfar', -1.0),
    ('raster.chunk_size', 0), ('render_geometry_gradient', 'x'), ('dataset.name', ''),
    ('dataset.train_split', ''), ('dataset.eval_split', ' '), ('dataset.test_split', ''),
    ('dataset.augment', 'sometimes'), ('dataset.shuffle_buffer', 0), ('dataset.prefetch', -1),
    ('dataset.synthetic.num_train', 0), ('dataset.synthetic.num_validation', -2),
    ('dataset.synthetic.num_test', 0), ('loss_weights.land', -1.0),
    ('loss_weights.photo', float('nan')), ('reg_weights.shape', -1.0),
    ('land_error_start_epoch', -1), ('optimizer', 'lamb'), ('learning_rate', 0.0),
    ('learning_rate', 100.0), ('decoder_lr_scale', -1.0), ('lr_schedule', 'step'),
    ('warmup_steps', -5), ('grad_clip_norm', -1.0), ('batch_size', -4), ('batch_size', 0),
    ('num_epochs', 0.0), ('num_train_steps', -7), ('parallel', 'pjit'),
    ('distributed.initialize', 'on'), ('distributed.num_processes', 0),
    ('distributed.process_id', -2), ('max_consecutive_nonfinite', -1), ('log_every_steps', 0),
    ('eval_every_steps', -1), ('num_eval_batches', 0), ('eval_batch_size', -8),
    ('image_every_steps', -1), ('num_summary_images', 0), ('checkpoint_every_steps', 0),
    ('keep_checkpoints', 0), ('async_checkpointing', 'maybe'), ('profile', 3), ('final_test', None),
    ('report', 'yes'),
    ('target_nme', 0.0), ('target_psnr', -25.0)]


@pytest.mark.parametrize('field, value', BAD_VALUES, ids=[f'{f}={v}' for f, v in BAD_VALUES])
def test_each_config_field_is_validated(field, value):
  config = _bad(field, value)
  with pytest.raises(ValueError, match=rf'config\.{field.replace(".", r"[.]")}=') as info:
    validate.validate_config(config, device_count=8)
  assert 'must be' in str(info.value)


def test_valid_configs_pass_and_relations_are_checked():
  for config in (default.get_config(), paper.get_config(), test_config.get_config()):
    validate.validate_config(config, device_count=1)
  validate.validate_config(test_config.get_config(), device_count=8)
  with pytest.raises(ValueError, match='batch_size=8 must be a multiple of the 3 devices'):
    validate.validate_config(test_config.get_config(), device_count=3)
  c = test_config.get_config()
  c.distributed.num_processes, c.distributed.process_id = 2, 2
  with pytest.raises(ValueError, match='process_id=2 must be below'):
    validate.validate_config(c)
  c = test_config.get_config()
  c.num_train_steps, c.num_epochs = -1, 0.0
  with pytest.raises(ValueError, match='num_epochs'):
    validate.validate_config(c)


def test_resume_refuses_model_data_and_loss_changes(tmp_path):
  config = test_config.get_config()
  assert train.check_resume_config(str(tmp_path), config) == []  # a new workdir
  train.write_config(str(tmp_path), config)
  (tmp_path / 'checkpoints').mkdir()
  harmless = test_config.get_config()
  harmless.num_train_steps, harmless.log_every_steps, harmless.eval_every_steps = 99, 7, 11
  harmless.dataset.data_dir = '/elsewhere'
  assert train.check_resume_config(str(tmp_path), harmless) == []
  changed = test_config.get_config()
  changed.model.width = 0.25
  changed.dataset.name = 'w300lp'
  changed.loss_weights.photo = 1.0
  with pytest.raises(ValueError, match=r'changed fields: dataset.name: .synthetic_faces. -> '
                                       r".w300lp., loss_weights.photo: 100.0 -> 1.0, "
                                       r'model.width: 0.1 -> 0.25\. .*--allow_config_change'):
    train.check_resume_config(str(tmp_path), changed)
  assert train.check_resume_config(str(tmp_path), changed, allow_change=True) == [
      'dataset.name', 'loss_weights.photo', 'model.width']


def test_verdict_line():
  c = default.get_config()
  line = train.verdict(c, {'nme': 3.2, 'psnr': 26.0, 'ssim': 0.9, 'num_images': 500})
  assert 'NME 3.20% <= 3.5%: PASS' in line and 'PSNR 26.00 dB >= 25.0 dB: PASS' in line
  line = train.verdict(c, {'nme': 3.6, 'psnr': 24.0, 'ssim': 0.9, 'num_images': 500})
  assert 'NME 3.60% <= 3.5%: FAIL' in line and 'PSNR 24.00 dB >= 25.0 dB: FAIL' in line
