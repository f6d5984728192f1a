"""300W-LP (Zhu et al., CVPR 2016) training faces: TFDS builder from a manual folder."""
import glob
import os

import numpy as np

from facernet_jax.data.real import common

SUBSETS = ('AFW', 'HELEN', 'IBUG', 'LFPW')

_INSTRUCTIONS = """\
Download 300W-LP (http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm),
unzip it and pass the folder that contains `300W_LP/` (or `300W_LP` itself) as manual_dir:

  <manual_dir>/300W_LP/AFW/AFW_134212_1_0.jpg + AFW_134212_1_0.mat
  <manual_dir>/300W_LP/HELEN/..., IBUG/..., LFPW/...        (each NAME.jpg with NAME.mat)
  <manual_dir>/300W_LP/AFW_Flip/...  (optional; read only with include_flipped=True)
  <manual_dir>/300W_LP/landmarks/... (not needed)

Each NAME.mat holds `pt2d` (2, 68) 1-based MATLAB pixels and `Pose_Para` (1, 7)
= (pitch, yaw, roll [radians], tx, ty, tz, scale).
"""


class W300lp(common.RealFacesBuilder):
  """300W-LP: image crops, 68 landmarks (pt2d), yaw from Pose_Para."""
  name = 'w300lp'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=self._base_features(68),
        supervised_keys=None,
        homepage='http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm')

  def _root(self, dl_manager):
    manual = self._manual_root(dl_manager)
    for cand in (os.path.join(manual, '300W_LP'), manual):
      if any(os.path.isdir(os.path.join(cand, s)) for s in SUBSETS):
        return cand
    raise self._layout_error(
        manual, f'none of the subset folders {SUBSETS} found under '
        f'{os.path.join(manual, "300W_LP")} or {manual}')

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    folders = [s for s in SUBSETS if os.path.isdir(os.path.join(root, s))]
    if self.builder_config.include_flipped:
      folders += [s + '_Flip' for s in SUBSETS if os.path.isdir(os.path.join(root, s + '_Flip'))]
    mats = sorted(m for f in folders for m in glob.glob(os.path.join(root, f, '*.mat')))
    if not mats:
      raise self._layout_error(root, f'no NAME.mat files in {folders}')
    return {'train': self._generate_examples(root, mats)}

  def _generate_examples(self, root, mats):
    cfg = self.builder_config
    counter = common.SkipCounter(self.name)
    items = common.mat_items(counter, root, mats, _parse_annotation, 'pt2d (2, 68)')
    yield from common.generate_cropped(counter, items, cfg.image_size, cfg.box_scale)


def _parse_annotation(m):
  """pt2d (2, 68) 1-based MATLAB pixels; yaw in degrees from Pose_Para[1] (radians) when present."""
  yaw = float(np.degrees(np.ravel(m['Pose_Para'])[1])) if 'Pose_Para' in m else np.nan
  return common.matlab_points(m['pt2d'], 68), {'yaw': np.float32(yaw)}
