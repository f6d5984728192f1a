"""AFLW-LFPA (Jourabloo & Liu, CVPR 2016): large-pose AFLW faces with 34 landmarks."""
import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from facernet_jax.data.real import common

NUM_POINTS = 34

_INSTRUCTIONS = """\
Get AFLW-LFPA (Jourabloo & Liu, "Large-pose face alignment via CNN-based dense 3D
model fitting", CVPR 2016; images from AFLW, annotations from the authors) and lay it out as

  <manual_dir>/AFLW_LFPA/test/NAME.jpg + NAME.mat    (1,299 test faces)
  <manual_dir>/AFLW_LFPA/train/NAME.jpg + NAME.mat   (optional, 3,901 faces)

NAME.mat keys: `pt2d` (2, 34) or (34, 2) 1-based MATLAB pixels (required; a third
row / column of 0/1 values is read as visibility); `visibility` (34,) 0/1 (optional,
default all visible); `yaw` degrees or `Pose_Para` (1, 7) radians (optional, else NaN).
The release's own file layout could not be checked (docs/data_and_losses.md); if it
stores all faces in one file, write one .mat per image. For `evaluate`, make the
34-point vertex list with `python -m facernet_jax.data.real.lfpa_points`.
"""


class AflwLfpa(common.RealFacesBuilder):
  """AFLW-LFPA: crops, 34 landmarks, visibility, yaw when given."""
  name = 'aflw_lfpa'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self):
    extra = {'visible': tfds.features.Tensor(shape=(NUM_POINTS,), dtype=np.bool_)}
    return self.dataset_info_from_configs(
        features=self._base_features(NUM_POINTS, extra),
        homepage='https://cvlab.cse.msu.edu/project-pifa.html')

  def _split_generators(self, dl_manager):
    manual = self._manual_root(dl_manager)
    root = os.path.join(manual, 'AFLW_LFPA')
    if not os.path.isdir(root):
      raise self._layout_error(manual, f'folder {root} not found')
    splits = {}
    for split in ('train', 'test'):
      mats = sorted(glob.glob(os.path.join(root, split, '*.mat')))
      if mats:
        splits[split] = self._generate_examples(root, mats)
    if 'test' not in splits:
      raise self._layout_error(manual, f'no NAME.mat files in {os.path.join(root, "test")}')
    return splits

  def _generate_examples(self, root, mats):
    cfg = self.builder_config
    counter = common.SkipCounter(self.name)
    items = common.mat_items(counter, root, mats, _parse_annotation, f'pt2d (2, {NUM_POINTS})')
    yield from common.generate_cropped(counter, items, cfg.image_size, cfg.box_scale)


def annotation_yaw(m):
  """Yaw in degrees from an annotation dict: `yaw` (degrees) or, failing that, `Pose_Para[1]`
  (radians, as 300W-LP / AFLW2000-3D store it); NaN when neither is given. The builder and
  `evaluate`'s AFLW-LFPA benchmark both read yaw through this function."""
  if 'yaw' in m:
    return float(np.ravel(m['yaw'])[0])
  if 'Pose_Para' in m:
    return float(np.degrees(np.ravel(m['Pose_Para'])[1]))
  return float('nan')


def read_annotation(m):
  """One AFLW-LFPA annotation (a loaded NAME.mat) -> ((34, 2) continuous pixels, (34,) bool, yaw deg).

  `pt2d` (2, 34) or (34, 2) 1-based MATLAB pixels; a third row / column of 0/1 values is taken as
  visibility when there is no `visibility` key; `visibility` (34,) 0/1 (default all visible);
  yaw from `annotation_yaw`. Raises KeyError / ValueError for a malformed annotation.
  """
  raw = np.asarray(m['pt2d'], np.float64)
  points = common.matlab_points(raw, NUM_POINTS)
  visible = np.ones((NUM_POINTS,), bool)
  if 'visibility' in m:
    visible = np.ravel(m['visibility']).astype(bool)
    if visible.shape != (NUM_POINTS,):
      raise ValueError(f'visibility has shape {visible.shape}, expected ({NUM_POINTS},)')
  elif raw.ndim == 2 and 3 in raw.shape:
    third = raw[2] if raw.shape[0] == 3 else raw[:, 2]
    if third.shape == (NUM_POINTS,) and np.all((third == 0) | (third == 1)):
      visible = third.astype(bool)
  return points, visible, annotation_yaw(m)


def _parse_annotation(m):
  points, visible, yaw = read_annotation(m)
  return points, {'yaw': np.float32(yaw), 'visible': visible}
