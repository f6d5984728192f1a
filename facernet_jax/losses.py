"""Loss terms of Mobile-FaceRNet (Sec 3.4, Eqs 11-17), each a pure function.

Conventions (docs/data_and_losses.md):
  * landmarks (B, 68, 2) in continuous pixels; distances are divided by
    `image_size`, so a term is in units of the image size, summed over points
    (as Eqs 12-13 are written) and averaged over the batch;
  * images (B, H, W, 3) in [0, 1]; masks (B, H, W) in [0, 1] (the renderer's
    alpha, optionally times a skin / visibility mask);
  * every term is finite, with finite gradients, for an empty mask.
"""
import dataclasses
from typing import Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from facernet_jax import coefficients as coefficients_lib
from facernet_jax import landmarks as lmk

LANDMARK_WEIGHTS = lmk.landmark_weights()  # Eq 12: jaw 0.5, inner 1.
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
REG_WEIGHTS = {'shape': 2e-5, 'texture': 2e-2, 'expression': 4e-4}  # Eq 17.


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Eq 11 weights (the paper's values as defaults)."""
  land: float = 400.0
  land_error: float = 2000.0
  photo: float = 100.0
  ssim: float = 2.0
  smooth: float = 50.0
  reg: float = 1.0

  @classmethod
  def from_config(cls, cfg):
    """From a dict / ConfigDict with (a subset of) the field names."""
    cfg = dict(cfg)
    return cls(**{f.name: float(cfg[f.name]) for f in dataclasses.fields(cls)
                  if f.name in cfg})


def _safe_norm(x, axis=-1):
  """L2 norm with a zero (not NaN) gradient at 0."""
  sq = jnp.sum(jnp.square(x), axis=axis)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _masked_batch_mean(per_example, valid):
  """Mean over examples where `valid` (all when None); 0 when none is valid."""
  if valid is None:
    return jnp.mean(per_example)
  valid = valid.astype(per_example.dtype)
  return jnp.sum(per_example * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def landmark_loss(pred, gt, weights=None, image_size=1.0, valid=None):
  """Eq 12: sum_i w_i ||v_ki - v'_i||^2 in image-size units, batch mean.

  Args:
    pred, gt: (B, K, 2) continuous pixels.
    weights: (K,) per-point weights; default `LANDMARK_WEIGHTS` (jaw 0.5).
    image_size: pixels per unit (the square image's side).
    valid: optional (B,) mask of real (non-padding) examples.
  """
  if weights is None:
    weights = LANDMARK_WEIGHTS
  d2 = jnp.sum(jnp.square((pred - gt) / image_size), axis=-1)  # (B, K)
  return _masked_batch_mean(jnp.sum(d2 * jnp.asarray(weights, d2.dtype), -1), valid)


def landmark_error_loss(pred, gt, error_weights, image_size=1.0, valid=None):
  """Eq 13: sum over inner points of e_i ||v_ki - v'_i||^2 (image-size units).

  `error_weights` is (68,), zero on the contour; get it from
  `landmark_error_weights(state)`. Same reduction as `landmark_loss`.
  """
  return landmark_loss(pred, gt, jax.lax.stop_gradient(error_weights),
                       image_size, valid)


@flax.struct.dataclass
class LandmarkErrorState:
  """Running per-point landmark error for Eq 13 (part of the train state).

  error_sum, count: this epoch's accumulated Euclidean error (image-size
  units) per point and number of examples; prev_mean: the previous epoch's
  mean error per point (zeros before the first roll); epoch: 0-based epoch.
  """
  error_sum: jnp.ndarray
  count: jnp.ndarray
  prev_mean: jnp.ndarray
  epoch: jnp.ndarray


def init_landmark_error_state(num_points=lmk.NUM_LANDMARKS):
  return LandmarkErrorState(
      error_sum=jnp.zeros((num_points,), jnp.float32),
      count=jnp.zeros((), jnp.float32),
      prev_mean=jnp.zeros((num_points,), jnp.float32),
      epoch=jnp.zeros((), jnp.int32))


def update_landmark_error_state(state, pred, gt, image_size=1.0, valid=None,
                                axis_name=None):
  """Adds one batch's per-point errors ||pred - gt|| / image_size (no grads).

  Under pmap pass `axis_name` so that every device accumulates the global sum.
  """
  err = jax.lax.stop_gradient(_safe_norm((pred - gt) / image_size))  # (B, K)
  w = jnp.ones(err.shape[:1], err.dtype) if valid is None else valid.astype(err.dtype)
  batch_sum, batch_count = jnp.sum(err * w[:, None], 0), jnp.sum(w)
  if axis_name is not None:
    batch_sum = jax.lax.psum(batch_sum, axis_name)
    batch_count = jax.lax.psum(batch_count, axis_name)
  return state.replace(error_sum=state.error_sum + batch_sum,
                       count=state.count + batch_count)


def roll_landmark_error_state(state):
  """Epoch boundary: prev_mean <- this epoch's mean (kept when no data), reset."""
  has = state.count > 0
  mean = state.error_sum / jnp.maximum(state.count, 1.0)
  return state.replace(
      prev_mean=jnp.where(has, mean, state.prev_mean),
      error_sum=jnp.zeros_like(state.error_sum),
      count=jnp.zeros_like(state.count),
      epoch=state.epoch + 1)


def landmark_error_weights(state, indices=lmk.INNER_INDICES):
  """Eq 13's e_i: previous-epoch mean error of each inner point, scaled to mean 1.

  Returns (68,) with zeros outside `indices`; uniform ones over `indices`
  while no previous-epoch error exists.
  """
  idx = np.asarray(indices)
  e = state.prev_mean[idx]
  total = jnp.sum(e)
  e = jnp.where(total > 0, e * idx.size / jnp.where(total > 0, total, 1.0), 1.0)
  return jnp.zeros_like(state.prev_mean).at[idx].set(e)


def photometric_loss(image, render, mask):
  """Eq 14: mean over the mask of the per-pixel L2 norm of the RGB difference.

  Per image sum(mask * ||I - I'||) / max(sum(mask), 1), then the batch mean;
  0 (with finite gradients) for an empty mask.
  """
  mask = mask.astype(image.dtype)
  norm = _safe_norm(image - render)  # (B, H, W)
  num = jnp.sum(mask * norm, axis=(1, 2))
  den = jnp.maximum(jnp.sum(mask, axis=(1, 2)), 1.0)
  return jnp.mean(num / den)


def _ssim_from_stats(mu_x, mu_y, var_x, var_y, cov, c1, c2):
  return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim_global(x, y, mask, c1=SSIM_C1, c2=SSIM_C2):
  """Eq 15 SSIM with statistics over the whole mask; (B,) mean over channels.

  Population (1/n) variances and covariance over masked pixels, per channel.
  An empty mask gives SSIM 1.
  """
  m = mask.astype(x.dtype)[..., None]
  n = jnp.maximum(jnp.sum(m, axis=(1, 2)), 1e-6)  # (B, 1)
  mean = lambda a: jnp.sum(m * a, axis=(1, 2)) / n
  mu_x, mu_y = mean(x), mean(y)
  dx, dy = x - mu_x[:, None, None], y - mu_y[:, None, None]
  s = _ssim_from_stats(mu_x, mu_y, mean(dx * dx), mean(dy * dy), mean(dx * dy),
                       c1, c2)
  return jnp.mean(s, axis=-1)


def _gaussian_kernel(sigma, truncate=3.5):
  radius = int(truncate * sigma + 0.5)  # skimage / scipy: 11 taps for 1.5
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  return (k / k.sum()).astype(np.float32), radius


def _gaussian_filter(a, sigma):
  """Separable Gaussian over H, W of (B, H, W, C), scipy 'reflect' borders."""
  k, r = _gaussian_kernel(sigma)
  b, h, w, c = a.shape
  a = jnp.pad(a, ((0, 0), (r, r), (r, r), (0, 0)), mode='symmetric')
  a = jnp.moveaxis(a, -1, 1).reshape(b * c, 1, h + 2 * r, w + 2 * r)
  kernel = jnp.asarray(k, a.dtype)
  dn = ('NCHW', 'OIHW', 'NCHW')
  a = jax.lax.conv_general_dilated(a, kernel[None, None, :, None], (1, 1), 'VALID',
                                   dimension_numbers=dn)
  a = jax.lax.conv_general_dilated(a, kernel[None, None, None, :], (1, 1), 'VALID',
                                   dimension_numbers=dn)
  return jnp.moveaxis(a.reshape(b, c, h, w), 1, -1)


def ssim_windowed(x, y, mask, sigma=1.5, c1=SSIM_C1, c2=SSIM_C2):
  """Local Gaussian-window SSIM map averaged over the mask; (B,).

  Equals skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1) for a full mask:
  like skimage it averages only over pixels at least `radius` from the border.
  Empty mask gives 1.
  """
  f = lambda a: _gaussian_filter(a, sigma)
  mu_x, mu_y = f(x), f(y)
  var_x = f(x * x) - mu_x ** 2
  var_y = f(y * y) - mu_y ** 2
  cov = f(x * y) - mu_x * mu_y
  s = jnp.mean(_ssim_from_stats(mu_x, mu_y, var_x, var_y, cov, c1, c2), -1)
  _, r = _gaussian_kernel(sigma)
  w = jnp.zeros(mask.shape, x.dtype).at[:, r:-r, r:-r].set(
      mask[:, r:-r, r:-r].astype(x.dtype))
  den = jnp.sum(w, axis=(1, 2))
  return jnp.where(den > 0, jnp.sum(w * s, axis=(1, 2)) / jnp.maximum(den, 1e-6), 1.0)


def ssim_loss(image, render, mask, mode='global'):
  """Eq 15: 1 - SSIM(I, I') over the face region, batch mean.

  mode 'global' (default) is Eq 15 as written: one set of masked statistics per
  image. 'windowed' is the usual 11x11 Gaussian-window SSIM averaged over the mask.
  """
  if mode == 'global':
    s = ssim_global(image, render, mask)
  elif mode == 'windowed':
    s = ssim_windowed(image, render, mask)
  else:
    raise ValueError(f"ssim mode must be 'global' or 'windowed', got {mode!r}")
  return jnp.mean(1.0 - s)


def smoothness_loss(vertices, neighbours):
  """Eq 16: (1/N) sum_i || (1/d_i) sum_{j in Adj_i} (v_i - v_j) ||^2, batch mean.

  Args:
    vertices: (B, N, 3).
    neighbours: (N, D) int, padded with -1 (topology.vertex_neighbours).
  Vertices without neighbours contribute 0.
  """
  nb = jnp.asarray(neighbours)
  valid = (nb >= 0).astype(vertices.dtype)  # (N, D)
  vj = vertices[:, jnp.maximum(nb, 0)]      # (B, N, D, 3)
  diff = (vertices[:, :, None, :] - vj) * valid[None, :, :, None]
  deg = jnp.maximum(jnp.sum(valid, -1), 1.0)  # (N,)
  lap = jnp.sum(diff, axis=2) / deg[None, :, None]
  return jnp.mean(jnp.sum(jnp.square(lap), -1))


def check_reg_weights(weights):
  """Eq 17's per-group weights as a dict; unknown groups or negative weights are an error."""
  weights = dict(weights)
  unknown = set(weights) - set(REG_WEIGHTS)
  if unknown:
    raise ValueError(f'Eq 17 weights: unknown coefficient group(s) {sorted(unknown)}; '
                     f'expected {sorted(REG_WEIGHTS)}')
  negative = {k: w for k, w in weights.items() if w < 0}
  if negative:
    raise ValueError(f'Eq 17 weights must be >= 0, got {negative}')
  return weights


def regularisation_loss(coeffs, weights=None):
  """Eq 17: w_a ||alpha||^2 + w_b ||beta||^2 + w_d ||delta||^2, batch mean.

  `coeffs` is (B, 495) or the dict of `coefficients.split_coefficients`.
  """
  weights = check_reg_weights(REG_WEIGHTS if weights is None else weights)
  parts = coeffs if isinstance(coeffs, Mapping) else coefficients_lib.split_coefficients(coeffs)
  total = sum(w * jnp.sum(jnp.square(parts[k]), -1) for k, w in weights.items())
  return jnp.mean(total)


TERM_NAMES = ('land', 'land_error', 'photo', 'ssim', 'smooth', 'reg')


def total_loss(terms, weights: Optional[LossWeights] = None, *, epoch=None,
               land_error_start_epoch=5):
  """Eq 11: weighted sum of the terms present in `terms` (keys in TERM_NAMES).

  `land_error` counts only from epoch `land_error_start_epoch` on (0-based:
  5 = after the fifth epoch) when `epoch` is given (may be traced).
  Returns (scalar, {name: weighted term}).
  """
  if weights is None:
    weights = LossWeights()
  unknown = set(terms) - set(TERM_NAMES)
  if unknown:
    raise ValueError(f'unknown loss terms {sorted(unknown)}; expected {TERM_NAMES}')
  weighted = {}
  for name in TERM_NAMES:
    if name not in terms:
      continue
    w = getattr(weights, name)
    value = w * terms[name]
    if name == 'land_error' and epoch is not None:
      value = jnp.where(jnp.asarray(epoch) >= land_error_start_epoch, value,
                        jnp.zeros_like(value))
    weighted[name] = value
  total = sum(weighted.values()) if weighted else jnp.zeros(())
  return total, weighted
