"""Sec 4.1 data augmentation in TensorFlow ops (runs inside tf.data).

Horizontal flip (landmarks mirrored and permuted left <-> right, yaw negated),
rotation by U(-30, 30) degrees about the image centre (positive = clockwise on
screen, landmarks rotated with the image), per-channel colour scale U(0.6, 1.2).
Flip and rotation are each applied with probability 0.5, independently; the
colour scale always (the paper gives it no probability). Randomness is
stateless: the same `seed` (2,) int tensor gives the same augmentation, so a
pipeline restored at a position reproduces it exactly.

Coordinates are continuous pixels (pixel (i, j) has its centre at (j + .5, i + .5)).
"""
import math

import tensorflow as tf

from facernet_jax import landmarks as lmk

MAX_ROTATION_DEG = 30.0
COLOUR_SCALE_RANGE = (0.6, 1.2)
FLIP_PROBABILITY = 0.5
ROTATE_PROBABILITY = 0.5

# Extra per-pixel features transformed with the image (nearest neighbour).
SPATIAL_KEYS = ('mask', 'depth')
# Features that a flip / rotation would invalidate (synthetic ground truth).
UNSUPPORTED_KEYS = ('coefficients', 'normals')


def flip(image, landmarks):
  """Mirrors image (H, W, C) and (K, 2) landmarks; permutes 68 points left/right."""
  width = tf.cast(tf.shape(image)[1], landmarks.dtype)
  image = tf.reverse(image, axis=[1])
  landmarks = tf.stack([width - landmarks[:, 0], landmarks[:, 1]], axis=-1)
  if landmarks.shape[0] == lmk.NUM_LANDMARKS:
    landmarks = tf.gather(landmarks, lmk.FLIP_PERMUTATION)
  return image, landmarks


def _rotation_transform(angle_rad, height, width):
  """ImageProjectiveTransformV3 row mapping output index coords to input ones."""
  cx = (tf.cast(width, tf.float32) - 1.0) / 2.0   # centre in index coordinates
  cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
  c, s = tf.cos(angle_rad), tf.sin(angle_rad)
  # input = centre + R(-angle) (output - centre), R(a) = [[c, -s], [s, c]].
  a0, a1 = c, s
  b0, b1 = -s, c
  a2 = cx - a0 * cx - a1 * cy
  b2 = cy - b0 * cx - b1 * cy
  return tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]


def rotate_image(image, angle_deg, interpolation='BILINEAR'):
  """Rotates (H, W, C) by angle_deg clockwise (on screen) about the centre; 0 outside."""
  angle = tf.cast(angle_deg, tf.float32) * (math.pi / 180.0)
  shape = tf.shape(image)
  dtype = image.dtype
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None],
      transforms=_rotation_transform(angle, shape[0], shape[1]),
      output_shape=shape[:2], fill_value=0.0, interpolation=interpolation,
      fill_mode='CONSTANT')[0]
  return tf.cast(out, dtype) if dtype != tf.float32 else out


def rotate_points(points, angle_deg, height, width):
  """Rotates continuous-pixel (K, 2) points like `rotate_image`."""
  angle = tf.cast(angle_deg, points.dtype) * (math.pi / 180.0)
  c, s = tf.cos(angle), tf.sin(angle)
  cx = tf.cast(width, points.dtype) / 2.0
  cy = tf.cast(height, points.dtype) / 2.0
  x, y = points[:, 0] - cx, points[:, 1] - cy
  return tf.stack([cx + c * x - s * y, cy + s * x + c * y], axis=-1)


def colour_scale(image, scale):
  """Multiplies each RGB channel of a float [0, 1] image by scale (3,), clipped."""
  return tf.clip_by_value(image * tf.cast(scale, image.dtype), 0.0, 1.0)


def sample_params(seed):
  """Draws (do_flip, do_rotate, angle_deg, colour_scale (3,)) from a (2,) seed."""
  seed = tf.cast(seed, tf.int64)
  sub = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(4)]
  do_flip = tf.random.stateless_uniform([], sub[0]) < FLIP_PROBABILITY
  do_rotate = tf.random.stateless_uniform([], sub[1]) < ROTATE_PROBABILITY
  angle = tf.random.stateless_uniform([], sub[2], -MAX_ROTATION_DEG, MAX_ROTATION_DEG)
  scale = tf.random.stateless_uniform([3], sub[3], *COLOUR_SCALE_RANGE)
  return do_flip, do_rotate, angle, scale


def augment_example(example, seed):
  """Applies Sec 4.1 augmentation to one example dict (image float32 [0, 1]).

  Transforms `image`, `landmarks`, `yaw` (negated on flip) and the per-pixel
  `mask` / `depth` when present; other features pass through unchanged.
  """
  bad = [k for k in UNSUPPORTED_KEYS if k in example]
  if bad:
    raise ValueError(
        f'augmentation would invalidate the ground-truth features {bad} '
        '(synthetic examples); build the pipeline with augment=False')
  do_flip, do_rotate, angle, scale = sample_params(seed)
  ex = dict(example)
  image, landmarks = ex['image'], ex['landmarks']
  spatial = {k: ex[k] for k in SPATIAL_KEYS if k in ex}
  expand = {k: v.shape.rank == 2 for k, v in spatial.items()}
  spatial = {k: (v[..., None] if expand[k] else v) for k, v in spatial.items()}

  def _flip():
    im, lm = flip(image, landmarks)
    return (im, lm) + tuple(tf.reverse(spatial[k], [1]) for k in spatial)

  def _noflip():
    return (image, landmarks) + tuple(spatial[k] for k in spatial)

  out = tf.cond(do_flip, _flip, _noflip)
  image, landmarks, rest = out[0], out[1], dict(zip(spatial, out[2:]))
  if 'yaw' in ex:
    ex['yaw'] = tf.where(do_flip, -ex['yaw'], ex['yaw'])

  h, w = tf.shape(image)[0], tf.shape(image)[1]
  ang = tf.where(do_rotate, angle, 0.0)
  image = rotate_image(image, ang)
  landmarks = rotate_points(landmarks, ang, h, w)
  for k in rest:
    rest[k] = rotate_image(rest[k], ang, interpolation='NEAREST')
  image = colour_scale(image, scale)
  ex['image'], ex['landmarks'] = image, landmarks
  for k, v in rest.items():
    ex[k] = v[..., 0] if expand[k] else v
  return ex
