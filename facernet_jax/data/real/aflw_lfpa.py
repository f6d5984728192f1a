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

    def items():
      for mat in mats:
        stem = mat[:-4]
        image = next((stem + e for e in ('.jpg', '.png', '.jpeg') if os.path.exists(stem + e)), None)
        key = os.path.relpath(stem, root)
        if image is None:
          counter.skip(mat, 'no image NAME.jpg next to it')
          continue
        try:
          m = common.read_mat(mat)
          pts = common.matlab_points(m['pt2d'], NUM_POINTS)
          vis = np.ones((NUM_POINTS,), bool)
          if 'visibility' in m:
            vis = np.ravel(m['visibility']).astype(bool)
            if vis.shape != (NUM_POINTS,):
              raise ValueError(f'visibility has shape {vis.shape}')
          yaw = np.nan
          if 'yaw' in m:
            yaw = float(np.ravel(m['yaw'])[0])
          elif 'Pose_Para' in m:
            yaw = float(np.degrees(np.ravel(m['Pose_Para'])[1]))
        except Exception as e:  # pylint: disable=broad-except  (scipy raises many types)
          counter.skip(mat, f'bad annotation ({e!r}); expected pt2d (2, 34)')
          continue
        yield key, image, pts, None, {'yaw': np.float32(yaw), 'visible': vis}

    yield from common.generate_cropped(counter, items(), cfg.image_size, cfg.box_scale)
