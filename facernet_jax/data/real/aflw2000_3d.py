"""AFLW2000-3D (Zhu et al., CVPR 2016) test faces, optionally with 3DDFA's protocol arrays."""
import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from facernet_jax.data.real import aflw2000_protocol
from facernet_jax.data.real import common

_INSTRUCTIONS = """\
Download AFLW2000-3D (http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm),
unzip it and pass the folder that contains `AFLW2000/` as manual_dir:

  <manual_dir>/AFLW2000/image00002.jpg + image00002.mat   (pt3d_68 (3, 68), Pose_Para (1, 7))

Optional, from 3DDFA (github.com/cleardusk/3DDFA, test.configs/), in <manual_dir>/
or <manual_dir>/AFLW2000/:
  AFLW2000-3D.pts68.npy (2000, 3, 68)              rows matched to images by pt3d_68
  AFLW2000-3D_crop.roi_box.npy (2000, 4)           3DDFA's crop boxes (used as crops)
  AFLW2000-3D-Reannotated.pts68.npy (2000, 2, 68)  -> feature landmarks_reannotated
"""

class Aflw20003d(common.RealFacesBuilder):
  """AFLW2000-3D: crops, pt3d_68 landmarks, yaw (Pose_Para), optional 3DDFA crops."""
  name = 'aflw2000_3d'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self):
    extra = {
        'landmarks_reannotated': tfds.features.Tensor(
            shape=(68, 2), dtype=np.float32,
            doc="3DDFA's re-annotated points in crop pixels; NaN when not given"),
        'protocol_index': tfds.features.Scalar(
            dtype=np.int32, doc="row in 3DDFA's arrays, -1 when not given"),
    }
    return self.dataset_info_from_configs(
        features=self._base_features(68, extra),
        homepage='http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm')

  def _split_generators(self, dl_manager):
    manual = self._manual_root(dl_manager)
    root = os.path.join(manual, 'AFLW2000')
    if not os.path.isdir(root):
      if glob.glob(os.path.join(manual, 'image*.mat')):
        root = manual
      else:
        raise self._layout_error(manual, f'folder {root} not found')
    mats = sorted(glob.glob(os.path.join(root, 'image*.mat')))
    if not mats:
      raise self._layout_error(manual, f'no imageXXXXX.mat files in {root}')
    protocol = aflw2000_protocol.load_protocol(manual, root) if self.builder_config.use_3ddfa else {}
    return {'test': self._generate_examples(root, mats, protocol)}

  def _generate_examples(self, root, mats, protocol):
    cfg = self.builder_config
    counter = common.SkipCounter(self.name)
    rows = aflw2000_protocol.ProtocolRows(protocol)

    def items():
      for mat in mats:
        stem = mat[:-4]
        image = stem + '.jpg'
        key = os.path.basename(stem)
        if not os.path.exists(image):
          counter.skip(mat, 'no image NAME.jpg next to it')
          continue
        try:
          raw, points, yaw = aflw2000_protocol.read_annotation(mat)
        except Exception as e:  # pylint: disable=broad-except  (scipy raises many types)
          counter.skip(mat, f'bad annotation ({e!r}); expected pt3d_68 (3, 68), Pose_Para')
          continue
        row = rows.row(raw)
        box = rows.roi_box(row)  # None: the landmark crop
        reann = rows.reannotated(row)
        reann = np.full((68, 2), np.nan) if reann is None else reann
        yield key, image, points, box, {
            'yaw': np.float32(yaw), 'protocol_index': np.int32(row),
            '_points': {'landmarks_reannotated': reann}}

    yield from common.generate_cropped(counter, items(), cfg.image_size, cfg.box_scale)
