"""Tests of the tf.data input pipeline: shapes, epochs, sharding, exact restore, eval padding."""
import numpy as np
import pytest
import tensorflow as tf

from facernet_jax.data import pipeline

N = 13


def _source(n=N, size=8, channels=3):
  rng = np.random.default_rng(0)
  return tf.data.Dataset.from_tensor_slices({
      'image': rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8),
      'landmarks': (rng.random((n, 68, 2)) * size).astype(np.float32),
      'yaw': np.linspace(-80, 80, n).astype(np.float32),
      'id': np.arange(n, dtype=np.int32),
      'filename': np.array([f'img{i}.jpg' for i in range(n)]),
  })


def _make(start=0, augment=True, gbs=8, **kw):
  kw = {'process_index': 0, 'process_count': 1, 'local_device_count': 4, **kw}
  return pipeline.create_input_pipeline(_source(), 'train', gbs, image_size=8, seed=3,
                                        augment=augment, start_position=start,
                                        shuffle_buffer=64, **kw)


def test_batches_are_per_device_float_images():
  batch = next(_make())
  assert batch['image'].shape == (4, 2, 8, 8, 3) and batch['image'].dtype == np.float32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['landmarks'].shape == (4, 2, 68, 2) and batch['landmarks'].dtype == np.float32
  assert batch['yaw'].shape == (4, 2) and batch['id'].shape == (4, 2)


def test_restore_at_saved_position_gives_identical_batches():
  it = _make()
  for _ in range(5):  # 40 examples: crosses three epoch boundaries of 13
    next(it)
  saved = it.position
  assert saved == 40
  want = [next(it) for _ in range(3)]
  restored = _make(start=saved)
  got = [next(restored) for _ in range(3)]
  for a, b in zip(want, got):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert restored.position == saved + 24


def test_each_epoch_is_a_permutation_and_epochs_differ():
  it = _make(augment=False, gbs=N, local_device_count=1)
  epochs = [next(it)['id'].ravel() for _ in range(3)]
  for e in epochs:
    np.testing.assert_array_equal(np.sort(e), np.arange(N))
  assert not np.array_equal(epochs[0], epochs[1])


def test_processes_read_disjoint_shards():
  ids = []
  for p in range(2):
    it = _make(augment=False, gbs=4, process_index=p, process_count=2, local_device_count=2)
    ids.append(np.concatenate([next(it)['id'].ravel() for _ in range(3)]))  # 6 of 7 / 6
  assert not set(ids[0]) & set(ids[1])
  assert len(set(ids[0]) | set(ids[1])) == 12


def test_batch_size_must_divide_over_devices():
  with pytest.raises(ValueError, match='not divisible'):
    _make(gbs=6)


def test_gray_odd_sized_images_are_converted_and_landmarks_follow():
  src = tf.data.Dataset.from_tensor_slices({
      'image': np.full((4, 10, 12, 1), 255, np.uint8),
      'landmarks': np.tile(np.array([[6.0, 5.0]], np.float32), (4, 68, 1)),
  })
  it = pipeline.create_input_pipeline(src, 'train', 4, image_size=8, process_index=0,
                                      process_count=1, local_device_count=1)
  batch = next(it)
  assert batch['image'].shape == (1, 4, 8, 8, 3)
  np.testing.assert_allclose(batch['image'], 1.0, atol=1e-6)
  np.testing.assert_allclose(batch['landmarks'][0, 0, 0], [4.0, 4.0], atol=1e-6)


@pytest.mark.parametrize('process_count', [1, 2])
def test_eval_pipeline_pads_and_marks_valid(process_count):
  seen, counts = [], []
  for p in range(process_count):
    batches = list(pipeline.create_eval_pipeline(
        _source(), 'test', 4, image_size=8, process_index=p, process_count=process_count,
        local_device_count=2))
    counts.append(len(batches))
    for b in batches:
      assert b['valid'].shape == (2, 2 // process_count) and b['valid'].dtype == bool
      assert b['image'].shape[:2] == b['valid'].shape
      seen.extend(b['id'][b['valid']].tolist())
  assert len(set(counts)) == 1  # every process runs the same number of steps
  assert sorted(seen) == list(range(N))


# ----------------------------------------------------------------------------- several sources

def _tagged(n, tag, size=8):
  """Examples whose landmarks hold (tag, index) so each batch shows where it came from."""
  lm = np.zeros((n, 68, 2), np.float32)
  lm[:, 0, 0], lm[:, 0, 1] = tag, np.arange(n)
  return tf.data.Dataset.from_tensor_slices({
      'image': np.full((n, size, size, 3), 10 * tag, np.uint8), 'landmarks': lm})


def _mixed(start=0, weights=(1.0, 3.0), gbs=8):
  return pipeline.create_input_pipeline(
      [_tagged(11, 0), _tagged(29, 1)], 'train', gbs, image_size=8, seed=5, augment=False,
      start_position=start, shuffle_buffer=64, process_index=0, process_count=1,
      local_device_count=1, weights=weights, keys=['image', 'landmarks'])


def test_sources_are_interleaved_with_the_stated_weights():
  it = _mixed()
  tags = np.concatenate([next(it)['landmarks'][0, :, 0, 0] for _ in range(96)])  # 768 picks
  assert abs(np.mean(tags == 1) - 0.75) < 0.05  # weights 1:3 (binomial sd 0.015)
  # Mixed example by example, not source after source: both in every window of 64 (a window of
  # one source only has probability 0.75**64 ~ 1e-8).
  windows = tags.reshape(-1, 64)
  assert np.all((windows == 0).any(1) & (windows == 1).any(1))
  # Each source still runs whole epochs: its first 11 (resp. 29) picks are a permutation.
  it = _mixed()
  picks = np.concatenate([next(it)['landmarks'][0, :, 0, :] for _ in range(40)])
  for tag, n in ((0, 11), (1, 29)):
    idx = picks[picks[:, 0] == tag][:, 1]
    np.testing.assert_array_equal(np.sort(idx[:n]), np.arange(n))
  # Default weights: proportional to the sizes (11 : 29).
  np.testing.assert_allclose(pipeline.mixture_weights(None, [11, 29]), [11 / 40, 29 / 40])
  with pytest.raises(ValueError, match='one positive number per source'):
    pipeline.mixture_weights([1.0, 0.0], [11, 29])


def test_mixture_restores_exactly_at_a_saved_position():
  it = _mixed()
  for _ in range(700):  # 5600 picks: past the first MIX_BLOCK of 4096 and several epochs of both
    next(it)
  want = [next(it) for _ in range(3)]
  np.testing.assert_array_equal(
      pipeline.mixture_counts(5, pipeline.mixture_weights((1.0, 3.0), [11, 29]), 10).sum(), 10)
  restored = _mixed(start=5600)
  for a in want:
    b = next(restored)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
