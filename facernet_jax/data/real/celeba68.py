"""CelebA (Liu et al., ICCV 2015) training faces with user-provided 68-point landmarks.

CelebA ships only 5 landmarks; the 68 points come from a detector the user runs
(the paper uses one, ref [45]) and are given in a simple CSV file, which
`python -m facernet_jax.data.real.make_celeba68` makes with dlib.
"""
import csv
import os

import numpy as np

from facernet_jax.data.real import common

LANDMARK_FILE = 'celeba_68.csv'

IMAGE_DIRS = ('img_align_celeba', os.path.join('Img', 'img_align_celeba'))

_INSTRUCTIONS = f"""\
Download CelebA's aligned images (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html,
Img/img_align_celeba.zip) and Anno/list_landmarks_align_celeba.txt, unzip, and make
the 68-point file with dlib (docs/data_and_losses.md):

  pip install 'facernet_jax[prepare]'
  python -m facernet_jax.data.real.make_celeba68 --celeba-dir <manual_dir>

which gives (the release's Img/img_align_celeba/ works too)

  <manual_dir>/img_align_celeba/000001.jpg ...
  <manual_dir>/{LANDMARK_FILE}

{LANDMARK_FILE}: a header line then one row per image:
  filename,x0,y0,x1,y1,...,x67,y67
filename is relative to img_align_celeba/; coordinates are 0-based pixel indices
in iBUG 68-point order (as dlib / face_alignment / OpenCV report them; the
loader adds 0.5 to get continuous pixels). Images without a row are not used.
"""


def find_image_dir(root):
  """root/img_align_celeba or root/Img/img_align_celeba (the release's layout); None if neither."""
  return next((os.path.join(root, d) for d in IMAGE_DIRS if os.path.isdir(os.path.join(root, d))), None)


def read_landmark_csv(path):
  """Reads celeba_68.csv -> list of (filename, (68, 2) continuous pixels)."""
  rows = []
  with open(path, newline='') as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if not header or header[0].strip() != 'filename' or len(header) != 1 + 136:
      raise ValueError(f'{path}: expected the header filename,x0,y0,...,x67,y67 '
                       f'(137 columns), got {header[:3] if header else header}...')
    for n, row in enumerate(reader, start=2):
      if not row:
        continue
      if len(row) != 137:
        raise ValueError(f'{path}:{n}: expected 137 columns, got {len(row)}')
      pts = np.asarray([float(v) for v in row[1:]], np.float64).reshape(68, 2)
      rows.append((row[0].strip(), pts + 0.5))
  return rows


class Celeba68(common.RealFacesBuilder):
  """CelebA aligned images with 68 landmarks from `celeba_68.csv`; yaw NaN."""
  name = 'celeba68'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=self._base_features(68),
        homepage='https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html')

  def _split_generators(self, dl_manager):
    manual = self._manual_root(dl_manager)
    images = find_image_dir(manual)
    csv_path = os.path.join(manual, LANDMARK_FILE)
    if images is None:
      raise self._layout_error(manual, f'image folder {os.path.join(manual, IMAGE_DIRS[0])} '
                               f'(or {os.path.join(manual, IMAGE_DIRS[1])}) not found')
    if not os.path.exists(csv_path):
      raise self._layout_error(manual, f'landmark file {csv_path} not found')
    try:
      rows = read_landmark_csv(csv_path)
    except ValueError as e:
      raise self._layout_error(manual, str(e)) from None
    return {'train': self._generate_examples(images, rows)}

  def _generate_examples(self, images, rows):
    cfg = self.builder_config
    counter = common.SkipCounter(self.name)

    def items():
      for fname, pts in rows:
        path = os.path.join(images, fname)
        if not os.path.exists(path):
          counter.skip(path, 'listed in the landmark file but missing')
          continue
        yield fname, path, pts, None, {'yaw': np.float32(np.nan)}

    yield from common.generate_cropped(counter, items(), cfg.image_size, cfg.box_scale)
