"""3DDFA's AFLW2000-3D protocol, once for the TFDS builder and the benchmark: the per-image annotation,
the optional protocol arrays, and how a photo's row in them is found.

An image's row in 3DDFA's arrays is found by its pt3d_68 (x, y rounded to 0.01 px), since the arrays
are not ordered like the folder. pt3d_68 are 1-based MATLAB pixels (-0.5); 3DDFA's re-annotation is
0-based (+0.5, on average 1 px up-left of pt3d_68); 3DDFA crops img[sy:ey, sx:ex] with 0-based integer
edges, which are continuous edges after rounding. Numpy only (no TensorFlow).
"""
import os

import numpy as np

from facernet_jax.data.real import common

PROTOCOL_FILES = {
    'pts68': 'AFLW2000-3D.pts68.npy',
    'roi_box': 'AFLW2000-3D_crop.roi_box.npy',
    'reannotated': 'AFLW2000-3D-Reannotated.pts68.npy',
}


def read_annotation(mat_path):
  """(raw pt3d_68 (3, 68), landmarks (68, 2) continuous px, yaw degrees) of one imageXXXXX.mat."""
  m = common.read_mat(mat_path)
  raw = np.asarray(m['pt3d_68'], np.float64)
  return raw, common.matlab_points(raw, 68), float(np.degrees(np.ravel(m['Pose_Para'])[1]))


def load_protocol(*folders):
  """3DDFA's arrays found in `folders` (the first folder holding each file wins), as {key: array}."""
  protocol = {}
  for key, fname in PROTOCOL_FILES.items():
    for d in folders:
      if d and os.path.isfile(os.path.join(d, fname)):
        protocol[key] = np.load(os.path.join(d, fname), allow_pickle=False)
        break
  return protocol


def _row_key(pts):
  return tuple(np.round(np.asarray(pts, np.float64)[:2].ravel(), 2))


class ProtocolRows:
  """Finds an image's row in 3DDFA's arrays and reads its crop box and re-annotated points."""

  def __init__(self, protocol):
    self.protocol = protocol
    self._rows = {_row_key(p): i for i, p in enumerate(protocol['pts68'])} if 'pts68' in protocol else {}

  def row(self, raw_pt3d_68):
    """Row of the image with these pt3d_68 points, -1 when not in the arrays."""
    return self._rows.get(_row_key(raw_pt3d_68), -1)

  def roi_box(self, row):
    """3DDFA's crop (x0, y0, x1, y1) in continuous pixels, or None."""
    if row < 0 or 'roi_box' not in self.protocol:
      return None
    return np.round(self.protocol['roi_box'][row]).astype(np.float64)

  def reannotated(self, row):
    """3DDFA's re-annotated 68 points (68, 2) in continuous pixels, or None."""
    if row < 0 or 'reannotated' not in self.protocol:
      return None
    return common.zero_based_points(self.protocol['reannotated'][row], 68)
