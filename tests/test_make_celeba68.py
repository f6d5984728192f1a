"""The CelebA 68-point maker on a generated CelebA folder in the release's layout, read back by the reader.

dlib (the dlib-bin wheel, in the dev extra) is needed; the 100 MB face_recognition_models predictor is
not: the test trains a tiny dlib shape predictor on drawn faces whose 68 points are known, so the
maker's output can be checked against those points (an independent reference).
"""
import csv
import os

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from facernet_jax import metrics
from facernet_jax.data import real
from facernet_jax.data.real import celeba68
from facernet_jax.data.real import make_celeba68 as mk

dlib = pytest.importorskip('dlib', reason="dlib not installed (pip install 'facernet_jax[dev]' or [prepare])")
tfds.disable_progress_bar()


def _arc(x0, x1, y, h, n):
  x = np.linspace(x0, x1, n)
  return np.stack([x, y - h * np.sin(np.pi * (x - x0) / (x1 - x0))], -1)


def _toy_points(rng):
  """68 iBUG-ordered points of a drawn face in CelebA's alignment (178 x 218), randomly moved."""
  cx, ey, my = 88.0, 111.0, 152.0
  t = np.linspace(np.pi, 0, 17)
  jaw = np.stack([cx - 50 * np.cos(t), 118 + 62 * np.sin(t)], -1)        # image-left to image-right
  brows = [_arc(cx - 36, cx - 8, ey - 14, 5, 5), _arc(cx + 8, cx + 36, ey - 14, 5, 5)]
  bridge = np.stack([np.full(4, cx), np.linspace(ey + 2, 134, 4)], -1)    # 27-30, 30 = nose tip
  nose = _arc(cx - 9, cx + 9, 140, -3, 5)
  a = np.radians([180, 120, 60, 0, -60, -120])                            # corner, upper, corner, lower
  eyes = [np.stack([ex + 8 * np.cos(a), ey - 4 * np.sin(a)], -1) for ex in (cx - 19, cx + 19)]
  a = np.linspace(np.pi, -np.pi, 13)[:-1]                                  # 48 left corner, 54 right
  outer = np.stack([cx + 17 * np.cos(a), my - 6 * np.sin(a)], -1)
  a = np.radians([180, 135, 90, 45, 0, -45, -90, -135])
  inner = np.stack([cx + 11 * np.cos(a), my - 2.5 * np.sin(a)], -1)
  p = np.concatenate([jaw] + brows + [bridge, nose] + eyes + [outer, inner])
  ang, s = np.radians(rng.uniform(-8, 8)), rng.uniform(0.92, 1.08)
  rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
  centre = np.array([cx, 130.0])
  return (p - centre) @ rot.T + centre + rng.uniform(-4, 4, 2) + rng.normal(0, 0.7, p.shape)


def _draw(p, rng):
  img = cv2.GaussianBlur(rng.integers(30, 90, (218, 178, 3)).astype(np.uint8), (5, 5), 0)
  fix = lambda idx: np.round(p[list(idx)] * 16).astype(np.int32)  # 4 fractional bits
  cv2.fillPoly(img, [fix(list(range(17)) + list(range(26, 16, -1)))], (205, 165, 140), cv2.LINE_AA, 4)
  for idx in (range(17, 22), range(22, 27)):
    cv2.polylines(img, [fix(idx)], False, (70, 50, 40), 3, cv2.LINE_AA, 4)
  cv2.polylines(img, [fix(range(27, 31))], False, (150, 110, 95), 2, cv2.LINE_AA, 4)
  cv2.polylines(img, [fix(range(31, 36))], False, (120, 85, 75), 2, cv2.LINE_AA, 4)
  for idx in (range(36, 42), range(42, 48)):
    cv2.fillPoly(img, [fix(idx)], (245, 245, 245), cv2.LINE_AA, 4)
    centre = tuple(int(v) for v in np.round(p[list(idx)].mean(0) * 16))
    cv2.circle(img, centre, 40, (40, 30, 20), -1, cv2.LINE_AA, 4)
  cv2.fillPoly(img, [fix(range(48, 60))], (170, 60, 70), cv2.LINE_AA, 4)
  cv2.polylines(img, [fix(range(60, 68))], True, (90, 20, 30), 1, cv2.LINE_AA, 4)
  return img


@pytest.fixture(scope='module')
def celeba(tmp_path_factory):
  """A tiny predictor trained on 30 drawn faces + a CelebA folder (Img/, Anno/) with 5 more faces,
  one listed but missing, one truncated JPEG and one whose 5 points fit no face."""
  root = tmp_path_factory.mktemp('celeba')
  rng = np.random.default_rng(0)
  images, objects = [], []
  for _ in range(30):
    p = _toy_points(rng)
    rect = dlib.rectangle(*mk.box_from_five(mk.five_from_68(p)))
    parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in p])
    images.append(_draw(p, rng))
    objects.append([dlib.full_object_detection(rect, parts)])
  opts = dlib.shape_predictor_training_options()
  opts.cascade_depth, opts.tree_depth, opts.num_trees_per_cascade_level = 6, 3, 40
  opts.oversampling_amount, opts.feature_pool_size, opts.num_test_splits, opts.nu = 10, 200, 10, 0.2
  predictor = str(root / 'tiny_68.dat')
  dlib.train_shape_predictor(images, objects, opts).save(predictor)

  celeba_dir = root / 'CelebA'
  img_dir = celeba_dir / 'Img' / 'img_align_celeba'
  img_dir.mkdir(parents=True)
  (celeba_dir / 'Anno').mkdir()
  truth, lines = {}, []
  for i in range(1, 9):
    name = f'{i:06d}.jpg'
    p = _toy_points(rng)
    five = np.round(mk.five_from_68(p)).astype(int)
    if i == 6:  # mouth corners given 5 px under the eyes: no face shape fits these 5 points
      five[2], five[3:] = five[:2].mean(0), five[:2] + [0, 5]
    if i != 4:
      ok = cv2.imwrite(str(img_dir / name), cv2.cvtColor(_draw(p, rng), cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, 98])
      assert ok
    if i == 7:
      data = (img_dir / name).read_bytes()
      (img_dir / name).write_bytes(data[:len(data) // 2])
    truth[name] = p
    lines.append(name + ' ' + ' '.join(f'{v:4d}' for v in five.reshape(-1)))
  header = 'lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y'
  (celeba_dir / 'Anno' / mk.FIVE_POINT_FILE).write_text(f'{len(lines)}\n{header}\n' + '\n'.join(lines) + '\n')
  return dict(root=root, dir=celeba_dir, predictor=predictor, truth=truth)


def test_maker_writes_what_the_reader_reads(celeba, capsys):
  out = celeba['dir'] / celeba68.LANDMARK_FILE
  args = ['--celeba_dir', str(celeba['dir']), '--predictor', celeba['predictor']]
  # An interrupted earlier run: one finished row (made-up points, must be kept as they are) and a
  # line cut off mid-write (must be dropped and redone).
  kept = np.arange(136).reshape(68, 2) % 50 + 60
  with open(str(out) + '.partial', 'w', newline='') as f:
    csv.writer(f).writerow(['000008.jpg', 'ok', 'five_points'] + [str(v) for v in kept.reshape(-1)])
    f.write('000002.jpg,ok,five_points,12,3\n000001.jpg')
  assert mk.main(args) == 0
  assert 'resuming: 1 of 8' in capsys.readouterr().err  # the two cut-off lines were not counted
  assert not os.path.exists(str(out) + '.partial')
  rows = celeba68.read_landmark_csv(out)
  names = [n for n, _ in rows]
  assert names == ['000001.jpg', '000002.jpg', '000003.jpg', '000005.jpg', '000008.jpg']  # file order
  got = dict(rows)
  np.testing.assert_array_equal(got['000008.jpg'], kept + 0.5)  # resumed row untouched, +0.5 by the reader
  for n in names[:-1]:  # vs the drawn points (pixel indices; the reader gives continuous pixels)
    nme = float(metrics.nme_per_image(got[n], celeba['truth'][n] + 0.5))
    assert nme < 0.04, (n, nme)
  with open(str(out) + '.failures.csv', newline='') as f:
    failures = {r['filename']: r['reason'] for r in csv.DictReader(f)}
  assert failures == {'000004.jpg': 'missing', '000006.jpg': 'disagrees_with_5_points',
                      '000007.jpg': 'unreadable'}
  # The TFDS builder reads the release layout (Img/img_align_celeba) with this file.
  builder = real.prepare('celeba68', celeba['dir'], data_dir=str(celeba['root'] / 'tfds'), image_size=32)
  examples = list(tfds.as_numpy(builder.as_dataset(split='train', shuffle_files=False)))
  assert sorted(e['filename'].decode() for e in examples) == names
  # A second run does not overwrite the finished file unless asked to.
  assert mk.main(args) == 2
  assert 'exists; pass --overwrite' in capsys.readouterr().err


def test_maker_errors_name_the_fix(celeba, tmp_path, capsys):
  assert mk.main(['--celeba-dir', str(tmp_path), '--predictor', celeba['predictor']]) == 2
  assert 'no img_align_celeba/' in capsys.readouterr().err
  (tmp_path / 'img_align_celeba').mkdir()
  assert mk.main(['--celeba-dir', str(tmp_path), '--predictor', celeba['predictor']]) == 2
  assert 'Anno/list_landmarks_align_celeba.txt' in capsys.readouterr().err
  assert mk.main(['--celeba-dir', str(tmp_path), '--predictor', str(tmp_path / 'none.dat')]) == 2
  assert 'shape predictor not found' in capsys.readouterr().err
  (tmp_path / mk.FIVE_POINT_FILE).write_text('2\nlefteye_x lefteye_y\n000001.jpg 1 2\n')
  with pytest.raises(mk.PrepareError, match='header line should be lefteye_x lefteye_y righteye_x'):
    mk.read_five_points(tmp_path / mk.FIVE_POINT_FILE)
  assert not list(tmp_path.glob('celeba_68.csv*'))  # nothing half-written


def test_five_point_helpers_by_hand():
  p = np.zeros((68, 2))
  p[36:42] = [10, 20]
  p[42:48] = [30, 20]
  p[30], p[48], p[54] = [20, 30], [12, 40], [28, 40]
  np.testing.assert_array_equal(mk.five_from_68(p), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
  # eyes mid (20, 20), mouth mid (20, 40): centre y = 20 + 0.49 * 20 = 29.8, side 2.56 * 20 = 51.2.
  assert mk.box_from_five(mk.five_from_68(p)) == (round(20 - 25.6), round(29.8 - 25.6), round(20 + 25.6 - 1),
                                                  round(29.8 + 25.6 - 1))
  five = mk.five_from_68(p) + [[2, 0], [0, 0], [0, 0], [0, 0], [0, 0]]
  assert mk.five_point_error(p, five) == pytest.approx((2 / 5) / np.hypot(18, 0))
