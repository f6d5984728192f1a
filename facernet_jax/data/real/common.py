"""Shared pieces of the real-data builders: config, layout errors, cropping."""
import dataclasses
import logging
import os

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from facernet_jax import landmarks as lmk
from facernet_jax.data import image_io

DEFAULT_SIZES = (64, 120, 224)


class LayoutError(FileNotFoundError):
  """The manual folder is missing or not laid out as expected."""


@dataclasses.dataclass(eq=False)
class RealFacesConfig(tfds.core.BuilderConfig):
  """image_size: side of the square crop; box_scale: crop side / landmark-box side."""
  image_size: int = 120
  box_scale: float = lmk.BOX_SCALE         # 3DDFA's parse_roi_box_from_landmark
  include_flipped: bool = False            # 300W-LP only: also read *_Flip folders
  use_3ddfa: bool = True                   # AFLW2000-3D only: use 3DDFA arrays when given


def make_configs():
  return [RealFacesConfig(name=f'size{s}', image_size=s,
                          description=f'{s}x{s} crops') for s in DEFAULT_SIZES]


class RealFacesBuilder(tfds.core.GeneratorBasedBuilder):
  """Base class: helpers only (not registered)."""
  BUILDER_CONFIGS = make_configs()
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}

  @classmethod
  def make_config(cls, image_size, **overrides):
    name = overrides.pop('name', None) or f'size{image_size}' + ''.join(
        f'_{k}{v}' for k, v in sorted(overrides.items()))
    return RealFacesConfig(name=name, image_size=image_size, **overrides)

  def _manual_root(self, dl_manager):
    """manual_dir as a path, with an error saying what is missing, where it goes and how to get it."""
    try:
      path, problem = dl_manager.manual_dir, ''
    except AssertionError as e:  # TFDS: "Manual directory X does not exist or is empty. ..."
      path, problem = None, str(e).split('. ')[0]
    if path is None or not os.path.isdir(os.fspath(path)):
      raise LayoutError(
          f'{self.name}: {problem or f"manual folder {path} does not exist"}. Put the downloaded data there and pass '
          f'it as manual_dir (training: --config.dataset.manual_dir=FOLDER). Expected layout:\n'
          f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    return os.fspath(path)

  def _layout_error(self, root, problem):
    return LayoutError(f'{self.name}: {problem} (manual folder: {root}). '
                       f'Expected layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')

  def _base_features(self, num_points, extra=None):
    s = self.builder_config.image_size
    feats = {
        'image': tfds.features.Image(shape=(s, s, 3)),
        'landmarks': tfds.features.Tensor(shape=(num_points, 2), dtype=np.float32),
        'yaw': tfds.features.Scalar(dtype=np.float32,
                                    doc='degrees; NaN when unknown'),
        'box': tfds.features.Tensor(shape=(4,), dtype=np.float32,
                                    doc='crop box (x0, y0, x1, y1) in the original image'),
        'filename': tfds.features.Text(),
    }
    feats.update(extra or {})
    return tfds.features.FeaturesDict(feats)


def crop_example(image, landmarks, box=None, image_size=120, box_scale=lmk.BOX_SCALE,
                 extra_points=()):
  """Crops a square around `landmarks` (or uses `box`), resizes to image_size.

  Returns (crop uint8, landmarks in crop pixels float32, box float32, extra points).
  """
  if box is None:
    box = lmk.crop_box_from_landmarks(landmarks, box_scale)
  box = np.asarray(box, np.float64)
  if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
    raise ValueError(f'degenerate crop box {box}')
  crop, transform = image_io.crop_and_resize(image, box, image_size)
  out = transform(landmarks).astype(np.float32)
  extras = tuple(transform(p).astype(np.float32) for p in extra_points)
  return crop, out, box.astype(np.float32), extras


class SkipCounter:
  """Counts skipped files and logs a summary (never aborts the build)."""

  def __init__(self, name):
    self.name = name
    self.skipped = []

  def skip(self, path, reason):
    logging.warning('%s: skipping %s: %s', self.name, path, reason)
    self.skipped.append(str(path))

  def summary(self):
    if self.skipped:
      logging.warning('%s: skipped %d file(s): %s', self.name, len(self.skipped),
                      ', '.join(self.skipped[:20]) + (' ...' if len(self.skipped) > 20 else ''))


def read_mat(path):
  """Loads a MATLAB .mat file (scipy; no pickle involved)."""
  return scipy.io.loadmat(path)


def matlab_points(arr, num_points):
  """(2 or 3, K) or (K, 2 or 3) MATLAB 1-based points -> (K, 2) continuous pixels (-0.5)."""
  a = np.asarray(arr, np.float64)
  if a.ndim != 2:
    raise ValueError(f'expected a 2-D point array, got shape {a.shape}')
  if a.shape[1] == num_points and a.shape[0] in (2, 3):
    a = a.T
  if a.shape[0] != num_points or a.shape[1] < 2:
    raise ValueError(f'expected {num_points} points, got shape {np.shape(arr)}')
  return a[:, :2] - 0.5


def zero_based_points(arr, num_points):
  """(2, K) or (K, 2) 0-based pixel indices -> (K, 2) continuous pixels (+0.5)."""
  return matlab_points(arr, num_points) + 1.0


def mat_items(counter, root, mats, parse, expected):
  """Items for `generate_cropped` from NAME.mat annotations with NAME.jpg|.png|.jpeg beside them.

  `parse(mat_dict)` returns ((K, 2) points, feature dict); a file without an image or whose
  annotation `parse` rejects is skipped and counted, with `expected` in the message.
  """
  for mat in mats:
    stem = mat[:-4]
    image = next((stem + e for e in ('.jpg', '.png', '.jpeg') if os.path.exists(stem + e)), None)
    if image is None:
      counter.skip(mat, 'no image NAME.jpg next to it')
      continue
    try:
      points, features = parse(read_mat(mat))
    except Exception as e:  # pylint: disable=broad-except  (scipy raises many types)
      counter.skip(mat, f'bad annotation ({e!r}); expected {expected}')
      continue
    yield os.path.relpath(stem, root), image, points, None, features


def generate_cropped(counter, items, image_size, box_scale):
  """Shared generator loop.

  `items` yields (key, image path, (K, 2) points, box or None, features); a
  feature dict entry '_points' = {name: (K', 2) points} is mapped into the crop
  too and stored under `name`. Unreadable images are skipped and counted.
  """
  for key, path, points, box, feats in items:
    image = image_io.read_image_lenient(path, counter.skipped)
    if image is None:
      continue
    feats = dict(feats)
    extra = feats.pop('_points', {})
    if not np.all(np.isfinite(points)):
      counter.skip(path, 'non-finite landmark coordinates')
      continue
    try:
      crop, lm, box, extra_out = crop_example(image, points, box, image_size, box_scale,
                                              tuple(extra.values()))
    except ValueError as e:
      counter.skip(path, str(e))
      continue
    ex = {'image': crop, 'landmarks': lm, 'box': box, 'filename': key}
    ex.update(feats)
    ex.update(dict(zip(extra.keys(), extra_out)))
    yield key, ex
  counter.summary()
