"""The 495 regressed numbers and their split into named 3DMM coefficients (Eq 10): the layout every
layer shares (networks, decoder, losses, data), so it sits at the bottom of the package."""
import collections

import jax.numpy as jnp

# Order and sizes of Eq 10: alpha (shape), beta (texture), delta (expression),
# Euler rotation (pitch, yaw, roll; radians), translation, SH gamma (3 colours x 9).
COEFFICIENT_SIZES = collections.OrderedDict([
    ('shape', 199),
    ('texture', 199),
    ('expression', 64),
    ('rotation', 3),
    ('translation', 3),
    ('lighting', 27),
])
NUM_COEFFICIENTS = sum(COEFFICIENT_SIZES.values())  # 495


def coefficient_slices(sizes=COEFFICIENT_SIZES):
  """Returns an ordered dict name -> slice into the last axis."""
  slices, start = collections.OrderedDict(), 0
  for name, size in sizes.items():
    slices[name] = slice(start, start + size)
    start += size
  return slices


def split_coefficients(x, sizes=COEFFICIENT_SIZES):
  """Splits (..., 495) into a dict of named coefficients (Eq 10).

  A zero vector is the mean face, frontal, centred, under ambient light (the
  shading adds 0.8 to SH coefficient 0 of each colour).
  """
  total = sum(sizes.values())
  if x.shape[-1] != total:
    raise ValueError(f'expected last axis of size {total}, got shape {x.shape}')
  return {name: x[..., s] for name, s in coefficient_slices(sizes).items()}


def join_coefficients(parts, sizes=COEFFICIENT_SIZES):
  """Inverse of `split_coefficients`: concatenates named parts in Eq 10 order."""
  return jnp.concatenate([parts[name] for name in sizes], axis=-1)
