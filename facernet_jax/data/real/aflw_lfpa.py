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

NAME.mat keys: `pt2d` (2, 34) or (34, 2) 1-based MATLAB pixels (required);
`visibility` (34,) 0/1 (optional, default all visible); `yaw` degrees or
`Pose_Para` (1, 7) radians (optional, else NaN). The official release stores
the same fields in MATLAB files; convert them to one .mat per image.
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


def _parse_annotation(m):
  """pt2d (2, 34) 1-based MATLAB pixels; visibility (34,) 0/1 (default all); yaw in degrees from
  `yaw` or Pose_Para[1] (radians), NaN when neither is given."""
  points = common.matlab_points(m['pt2d'], NUM_POINTS)
  visible = np.ones((NUM_POINTS,), bool)
  if 'visibility' in m:
    visible = np.ravel(m['visibility']).astype(bool)
    if visible.shape != (NUM_POINTS,):
      raise ValueError(f'visibility has shape {visible.shape}')
  yaw = np.nan
  if 'yaw' in m:
    yaw = float(np.ravel(m['yaw'])[0])
  elif 'Pose_Para' in m:
    yaw = float(np.degrees(np.ravel(m['Pose_Para'])[1]))
  return points, {'yaw': np.float32(yaw), 'visible': visible}
