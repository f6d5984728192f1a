"""Quality of the CelebA 68-point maker on real faces with 68-point ground truth (an experiment, not a test).

Takes every annotated face of ../shared/data/faces68, warps it to CelebA's alignment (a similarity that
maps its eye centres and mouth corners onto CelebA's mean aligned positions, 178 x 218 px, JPEG), writes
a folder in CelebA's layout (img_align_celeba/NNNNNN.jpg + list_landmarks_align_celeba.txt with the 5
points, rounded as CelebA's integers), runs the documented command

  python -m facernet_jax.data.real.make_celeba68 --celeba-dir DIR [--box five_points]

reads its output with the celeba68 reader and reports, per annotation source: faces written / left out,
the box-normalised NME (metrics.nme_per_image, Eq 18) against the warped ground truth, and how often the
5 CelebA-style points (eye centres, nose tip, mouth corners) derived from the 68 agree with the given 5
(mean distance below 0.1 / 0.25 inter-ocular distances). The 5 points here come from the 68-point
ground truth, not from CelebA's annotators, and the dlib example faces' "ground truth" was itself made
by dlib's predictor (reported separately, it is not an independent reference).

  python experiments/celeba68_quality.py                # both box modes
  python experiments/celeba68_quality.py --calibrate    # medians behind make_celeba68.BOX_CENTRE / BOX_SIDE
"""
import argparse
import csv
import os
import pathlib
import subprocess
import sys
import tempfile

import cv2
import numpy as np

from facernet_jax import metrics
from facernet_jax.data import image_io
from facernet_jax.data.real import celeba68
from facernet_jax.data.real import make_celeba68

REPO = pathlib.Path(__file__).resolve().parents[1]
FACES68 = REPO.parent / 'shared' / 'data' / 'faces68'
# CelebA's aligned images: eye centres, nose, mouth corners near these positions (0-based pixels; read
# off the first rows of list_landmarks_align_celeba.txt, e.g. 000001: 69 109 106 113 77 142 73 152 108 154).
CELEBA_TEMPLATE = np.array([[69, 111], [107, 111], [88, 134], [72, 152], [105, 152]], np.float64)
CELEBA_SIZE = (178, 218)
MATLAB_SOURCES = ('aflw2000_3d', '300w_lp')  # 1-based MATLAB points; the rest are 0-based


def load_faces(root):
  """[(source, image, (68, 2) GT in pixel indices)] from faces68/index.csv."""
  faces = []
  with open(os.path.join(root, 'index.csv'), newline='') as f:
    for r in csv.DictReader(f):
      gt = np.load(os.path.join(root, r['landmarks']), allow_pickle=False).astype(np.float64)
      if r['source'] in MATLAB_SOURCES:
        gt = gt - 1.0
      faces.append((r['source'], image_io.read_image(os.path.join(root, r['image'])), gt))
  return faces


def align(image, gt):
  """Warps a face to CelebA's alignment; returns (178 x 218 image, GT in its pixel indices)."""
  five = make_celeba68.five_from_68(gt)
  m, _ = cv2.estimateAffinePartial2D(five[[0, 1, 3, 4]].astype(np.float32),
                                     CELEBA_TEMPLATE[[0, 1, 3, 4]].astype(np.float32))
  scale = float(np.hypot(m[0, 0], m[0, 1]))
  crop = cv2.warpAffine(image, m, CELEBA_SIZE, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
  return crop, gt @ m[:, :2].T + m[:, 2]


def write_celeba(folder, faces):
  """CelebA layout from aligned faces; returns {filename: (source, GT)}."""
  os.makedirs(os.path.join(folder, 'img_align_celeba'), exist_ok=True)
  truth, lines = {}, []
  for i, (source, image, gt) in enumerate(faces, start=1):
    crop, g = align(image, gt)
    name = f'{i:06d}.jpg'
    cv2.imwrite(os.path.join(folder, 'img_align_celeba', name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    five = np.round(make_celeba68.five_from_68(g)).astype(int)
    lines.append(name + ' ' + ' '.join(f'{v:4d}' for v in five.reshape(-1)))
    truth[name] = (source, g)
  header = ' '.join(f'{n}_{c}' for n in make_celeba68.FIVE_POINT_NAMES for c in 'xy')
  with open(os.path.join(folder, make_celeba68.FIVE_POINT_FILE), 'w') as f:
    f.write(f'{len(lines)}\n{header}\n' + '\n'.join(lines) + '\n')
  return truth


def calibrate(faces):
  """Medians of the HOG box centre / side relative to the 5 points on the dlib example faces."""
  import dlib  # pylint: disable=g-import-not-at-top
  det = dlib.get_frontal_face_detector()
  c, s = [], []
  for source, image, gt in faces:
    if source != 'dlib_examples_faces':
      continue
    crop, g = align(image, gt)
    five = make_celeba68.five_from_68(g)
    eyes, mouth = five[:2].mean(0), five[3:].mean(0)
    em = np.linalg.norm(mouth - eyes)
    for d in det(crop, 1):
      if all(d.left() <= x <= d.right() and d.top() <= y <= d.bottom() for x, y in five):
        centre = np.array([(d.left() + d.right()) / 2, (d.top() + d.bottom()) / 2])
        c.append((centre - eyes) @ (mouth - eyes) / em ** 2)
        s.append((d.right() - d.left() + 1) / em)
  print(f'calibration on {len(c)} dlib example faces with a HOG detection: BOX_CENTRE median {np.median(c):.3f} '
        f'(IQR {np.percentile(c, 25):.3f}-{np.percentile(c, 75):.3f}), BOX_SIDE median {np.median(s):.3f} '
        f'(IQR {np.percentile(s, 25):.3f}-{np.percentile(s, 75):.3f})')


def evaluate(folder, truth, box):
  out = os.path.join(folder, f'celeba_68_{box}.csv')
  cmd = [sys.executable, '-m', 'facernet_jax.data.real.make_celeba68', '--celeba-dir', folder, '--out', out,
         '--box', box]
  print('$ ' + ' '.join(cmd[1:]).replace(folder, 'DIR'))
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
  r = subprocess.run(cmd, env=env, capture_output=True, text=True)
  print((r.stdout + r.stderr).strip().replace(folder, 'DIR'))
  if r.returncode:
    sys.exit(r.returncode)
  rows = dict(celeba68.read_landmark_csv(out))  # continuous pixels (+0.5)
  print(f'{"source":26s} {"faces":>5s} {"written":>7s} {"NME %":>6s} {"median":>6s} {"max":>6s} '
        f'{"5pt<0.1":>7s} {"5pt<0.25":>8s}')
  groups = sorted({s for s, _ in truth.values()})
  independent = [s for s in groups if s != 'dlib_examples_faces']
  for group in groups + ['independent (all but dlib)']:
    members = independent if group.startswith('independent') else [group]
    names = [n for n, (s, _) in truth.items() if s in members]
    got = [n for n in names if n in rows]
    nme = np.array([metrics.nme_per_image(rows[n], truth[n][1] + 0.5) for n in got]) * 100
    agree = np.array([make_celeba68.five_point_error(truth[n][1], make_celeba68.five_from_68(rows[n] - 0.5))
                      for n in got])
    # 5-point agreement over all listed faces (left-out ones count as disagreeing).
    print(f'{group:26s} {len(names):5d} {len(got):7d} {nme.mean() if got else np.nan:6.2f} '
          f'{np.median(nme) if got else np.nan:6.2f} {nme.max() if got else np.nan:6.2f} '
          f'{np.sum(agree < 0.1) / len(names):7.0%} {np.sum(agree < 0.25) / len(names):8.0%}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--faces68', default=str(FACES68))
  p.add_argument('--calibrate', action='store_true')
  p.add_argument('--boxes', default='auto,five_points')
  args = p.parse_args()
  if not os.path.isfile(os.path.join(args.faces68, 'index.csv')):
    sys.exit(f'{args.faces68}: no index.csv (needs ../shared/data/faces68)')
  faces = load_faces(args.faces68)
  if args.calibrate:
    calibrate(faces)
    return
  with tempfile.TemporaryDirectory(prefix='celeba68_quality_') as folder:
    truth = write_celeba(folder, faces)
    print(f'{len(truth)} faces from {args.faces68} warped to CelebA alignment in DIR')
    for box in args.boxes.split(','):
      evaluate(folder, truth, box)


if __name__ == '__main__':
  main()
