"""Tests of facernet_jax.losses against independent references (Eqs 11-17)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from facernet_jax import losses


def test_landmark_loss_hand_computed():
  gt = np.zeros((2, 68, 2), np.float32)
  pred = gt.copy()
  pred[0, 0] = [3.0, 4.0]    # jaw point, distance 5 px -> weight 0.5
  pred[0, 30] = [0.0, 10.0]  # inner point, distance 10 px -> weight 1
  # Example 0: (0.5 * 25 + 100) / 10^2 = 1.125; example 1: 0. Mean 0.5625.
  got = losses.landmark_loss(pred, gt, image_size=10.0)
  np.testing.assert_allclose(got, 0.5625, rtol=1e-6)
  # Padding examples are excluded from the mean.
  got = losses.landmark_loss(pred, gt, image_size=10.0, valid=np.array([True, False]))
  np.testing.assert_allclose(got, 1.125, rtol=1e-6)


def test_landmark_weights_reading():
  w = np.asarray(losses.LANDMARK_WEIGHTS)
  assert w.shape == (68,)
  assert np.all(w[:17] == 0.5) and np.all(w[17:] == 1.0)


def test_landmark_error_state_and_loss():
  state = losses.init_landmark_error_state()
  gt = np.zeros((2, 68, 2), np.float32)
  pred = gt.copy()
  pred[:, 20] = [6.0, 8.0]   # error 10 px -> 0.1 units
  pred[0, 40] = [0.0, 20.0]  # 0.2 units in example 0 only -> mean 0.1
  pred[:, 3] = [50.0, 0.0]   # a jaw point: ignored by Eq 13
  # Before any epoch: uniform weights over the 51 inner points.
  w0 = np.asarray(losses.landmark_error_weights(state))
  np.testing.assert_array_equal(w0[:17], 0)
  np.testing.assert_array_equal(w0[17:], 1)
  state = losses.update_landmark_error_state(state, pred, gt, image_size=100.0)
  state = losses.update_landmark_error_state(state, pred[:1], gt[:1], image_size=100.0)
  assert float(state.count) == 3
  state = losses.roll_landmark_error_state(state)
  assert int(state.epoch) == 1 and float(state.count) == 0
  # Means over 3 examples: point 20: 0.1, point 40: (0.2 + 0 + 0.2) / 3.
  np.testing.assert_allclose(state.prev_mean[20], 0.1, rtol=1e-6)
  np.testing.assert_allclose(state.prev_mean[40], 0.4 / 3, rtol=1e-6)
  w = np.asarray(losses.landmark_error_weights(state))
  total = 0.1 + 0.4 / 3
  np.testing.assert_allclose(w[20], 0.1 * 51 / total, rtol=1e-5)
  np.testing.assert_allclose(w[40], (0.4 / 3) * 51 / total, rtol=1e-5)
  np.testing.assert_allclose(w[17:].mean(), 1.0, rtol=1e-5)
  assert w[3] == 0
  # Loss by hand: ex0: w20*0.01 + w40*0.04, ex1: w20*0.01.
  want = (w[20] * 0.01 + w[40] * 0.04 + w[20] * 0.01) / 2
  got = losses.landmark_error_loss(pred, gt, w, image_size=100.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # An epoch without data keeps the previous means.
  again = losses.roll_landmark_error_state(state)
  np.testing.assert_allclose(again.prev_mean, state.prev_mean)


def test_photometric_loss_hand_computed():
  image = np.zeros((1, 2, 2, 3), np.float32)
  render = np.zeros_like(image)
  render[0, 0, 0] = [0.3, 0.4, 0.0]   # norm 0.5
  render[0, 1, 1] = [0.0, 0.0, 1.0]   # norm 1, but outside the mask
  mask = np.array([[[1, 1], [0, 0]]], np.float32)
  np.testing.assert_allclose(losses.photometric_loss(image, render, mask), 0.25, rtol=1e-6)


def _grad_finite(fn, image, render, mask):
  g = jax.jit(jax.grad(lambda r, m: fn(image, r, m)))(render, mask)
  return bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize('fn', [
    losses.photometric_loss,
    losses.ssim_loss,
    lambda a, b, m: losses.ssim_loss(a, b, m, mode='windowed'),
])
def test_image_losses_finite_with_empty_mask(fn):
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.random((2, 16, 16, 3), np.float32))
  render = jnp.asarray(image)  # identical: photometric norm is 0 everywhere
  mask = jnp.zeros((2, 16, 16))
  value = jax.jit(fn)(image, render, mask)
  assert np.isfinite(float(value)) and abs(float(value)) < 1e-6
  assert _grad_finite(fn, image, render, mask)
  assert _grad_finite(fn, image, render, jnp.ones((2, 16, 16)))


def test_ssim_global_matches_skimage_full_window():
  # skimage with a uniform window as large as the (odd, square) image: its only
  # uncropped pixel is the centre, whose window covers the whole image exactly.
  rng = np.random.default_rng(1)
  x = rng.random((15, 15, 3))
  y = np.clip(0.6 * x + 0.3 * rng.random((15, 15, 3)), 0, 1)
  want = structural_similarity(x, y, win_size=15, gaussian_weights=False,
                               use_sample_covariance=False, data_range=1.0,
                               channel_axis=-1)
  got = losses.ssim_global(jnp.asarray(x[None], jnp.float32), jnp.asarray(y[None], jnp.float32),
                           jnp.ones((1, 15, 15)))
  np.testing.assert_allclose(got[0], want, rtol=1e-4)


def test_ssim_global_mask_equals_cropped_image():
  rng = np.random.default_rng(2)
  x = rng.random((1, 12, 12, 3)).astype(np.float32)
  y = rng.random((1, 12, 12, 3)).astype(np.float32)
  mask = np.zeros((1, 12, 12), np.float32)
  mask[:, 2:9, 3:10] = 1
  crop = lambda a: a[:, 2:9, 3:10]
  np.testing.assert_allclose(
      losses.ssim_global(x, y, mask),
      losses.ssim_global(crop(x), crop(y), np.ones((1, 7, 7), np.float32)), rtol=1e-5)


def test_ssim_windowed_matches_skimage():
  rng = np.random.default_rng(3)
  x = rng.random((24, 20, 3))
  y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
  want = structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False, data_range=1.0,
                               channel_axis=-1)
  got = losses.ssim_windowed(jnp.asarray(x[None], jnp.float32),
                             jnp.asarray(y[None], jnp.float32), jnp.ones((1, 24, 20)))
  np.testing.assert_allclose(got[0], want, rtol=1e-4)
  loss = losses.ssim_loss(jnp.asarray(x[None], jnp.float32), jnp.asarray(y[None], jnp.float32),
                          jnp.ones((1, 24, 20)), mode='windowed')
  np.testing.assert_allclose(loss, 1 - want, rtol=1e-3)


def _neighbours_fixture():
  """Padded neighbour lists of a 3x3 grid mesh (two triangles per cell) + 1 isolated vertex."""
  tris = []
  for r in range(2):
    for c in range(2):
      a, b, d, e = 3 * r + c, 3 * r + c + 1, 3 * (r + 1) + c, 3 * (r + 1) + c + 1
      tris += [(a, b, e), (a, e, d)]
  n = 10
  adj = [set() for _ in range(n)]
  for t in tris:
    for i in t:
      adj[i].update(j for j in t if j != i)
  width = max(len(a) for a in adj)
  nb = np.full((n, width), -1, np.int32)
  for i, a in enumerate(adj):
    nb[i, :len(a)] = sorted(a)
  return nb, adj


def test_smoothness_matches_brute_force_loop():
  nb, adj = _neighbours_fixture()
  rng = np.random.default_rng(4)
  v = rng.standard_normal((2, 10, 3))
  want = []
  for b in range(2):
    total = 0.0
    for i in range(10):
      if not adj[i]:
        continue
      lap = np.zeros(3)
      for j in adj[i]:
        lap += v[b, i] - v[b, j]
      total += np.sum((lap / len(adj[i])) ** 2)
    want.append(total / 10)
  got = jax.jit(losses.smoothness_loss)(jnp.asarray(v, jnp.float32), nb)
  np.testing.assert_allclose(got, np.mean(want), rtol=1e-5)


def test_regularisation_hand_computed():
  x = np.zeros((2, 495), np.float32)
  x[0, 0] = 10.0     # shape: 2e-5 * 100
  x[0, 199] = 1.0    # texture: 2e-2 * 1
  x[1, 398] = 5.0    # expression: 4e-4 * 25
  x[1, 470] = 100.0  # lighting: not regularised
  want = ((2e-5 * 100 + 2e-2) + 4e-4 * 25) / 2
  np.testing.assert_allclose(losses.regularisation_loss(jnp.asarray(x)), want, rtol=1e-5)


def test_total_loss_weights_and_epoch_gate():
  terms = {k: jnp.float32(1.0) for k in losses.TERM_NAMES}
  total, weighted = losses.total_loss(terms)
  np.testing.assert_allclose(total, 400 + 2000 + 100 + 2 + 50 + 1)
  assert weighted['land_error'] == 2000
  total4, w4 = losses.total_loss(terms, epoch=4)
  total5, _ = losses.total_loss(terms, epoch=jnp.int32(5))
  np.testing.assert_allclose(total4, 553.0)
  np.testing.assert_allclose(total5, 2553.0)
  assert float(w4['land_error']) == 0
  custom = losses.LossWeights.from_config({'land': 1.0, 'photo': 2.0})
  total, _ = losses.total_loss({'land': 3.0, 'photo': 1.0}, custom)
  np.testing.assert_allclose(total, 5.0)
  with pytest.raises(ValueError, match='unknown loss terms'):
    losses.total_loss({'lmk': 1.0})


def test_regularisation_loss_takes_per_group_weights():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 495)).astype(np.float32)
  weights = {'shape': 0.2, 'expression': 0.1}
  # Hand-computed: shape is x[:, :199], expression x[:, 398:462] (Eq 10 order); texture unweighted.
  want = np.mean(0.2 * np.sum(x[:, :199] ** 2, 1) + 0.1 * np.sum(x[:, 398:462] ** 2, 1))
  np.testing.assert_allclose(losses.regularisation_loss(jnp.asarray(x), weights), want, rtol=1e-5)
  with pytest.raises(ValueError, match=r"unknown coefficient group\(s\) \['pose'\]"):
    losses.regularisation_loss(jnp.asarray(x), {'pose': 1.0})
  with pytest.raises(ValueError, match=r"must be >= 0, got \{'shape': -0.2\}"):
    losses.regularisation_loss(jnp.asarray(x), {'shape': -0.2})
