"""Tests of the real-data builders (tiny folders in the real layouts) and image_io."""
import csv
import os

import cv2
import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from facernet_jax.data import image_io
from facernet_jax.data import pipeline
from facernet_jax.data import real

S = 32
tfds.disable_progress_bar()


def _face_points(n=68, cx=100.0, cy=110.0, r=50.0):
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  return np.stack([cx + r * np.cos(t), cy + 0.8 * r * np.sin(t)], -1)


def _dot_image(h, w, x, y, sigma=4.0):
  """uint8 image with a Gaussian dot centred at continuous pixel (x, y)."""
  jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
  d = 255 * np.exp(-((jj - x) ** 2 + (ii - y) ** 2) / (2 * sigma ** 2))
  return np.repeat(d[..., None], 3, -1).round().astype(np.uint8)


def _write_jpg(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])


def _centroid(image):
  m = image[..., 0].astype(np.float64)
  jj, ii = np.meshgrid(np.arange(m.shape[1]) + 0.5, np.arange(m.shape[0]) + 0.5)
  return np.array([np.sum(m * jj), np.sum(m * ii)]) / np.sum(m)


def _expected_crop(points, size=S):
  """Independent reference: 3DDFA square box (sqrt 2 x max side), linear map."""
  lo, hi = points.min(0), points.max(0)
  c, side = (lo + hi) / 2, np.sqrt(2) * (hi - lo).max()
  return (points - (c - side / 2)) * size / side


def _build(name, manual, data_dir):
  return real.prepare(name, manual, data_dir=str(data_dir), image_size=S)


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp('real')
  man, data = root / 'manual', root / 'data'
  pts = _face_points()       # continuous pixels
  mat_pts = (pts + 0.5).T    # 1-based MATLAB (2, 68)
  # 300W-LP: a good image (with a dot at landmark 30), a gray one, a truncated one.
  lp = man / '300W_LP'
  _write_jpg(lp / 'AFW' / 'AFW_1_0.jpg', _dot_image(240, 220, *pts[30]))
  scipy.io.savemat(lp / 'AFW' / 'AFW_1_0.mat', {'pt2d': mat_pts,
                                                'Pose_Para': [[0.1, -0.5, 0.0, 0, 0, 0, 1]]})
  _write_jpg(lp / 'HELEN' / 'HELEN_2_0.jpg', np.full((240, 220), 90, np.uint8))
  scipy.io.savemat(lp / 'HELEN' / 'HELEN_2_0.mat', {'pt2d': mat_pts, 'Pose_Para': np.zeros((1, 7))})
  good = open(lp / 'AFW' / 'AFW_1_0.jpg', 'rb').read()
  (lp / 'IBUG').mkdir()
  (lp / 'IBUG' / 'IBUG_3_0.jpg').write_bytes(good[:len(good) // 2])  # truncated
  scipy.io.savemat(lp / 'IBUG' / 'IBUG_3_0.mat', {'pt2d': mat_pts, 'Pose_Para': np.zeros((1, 7))})
  _write_jpg(lp / 'LFPW' / 'LFPW_4_0.jpg', _dot_image(240, 220, *pts[30]))
  (lp / 'LFPW' / 'LFPW_4_0.mat').write_bytes(b'MATLAB 5.0 MAT-file, garbage')  # corrupt
  # AFLW2000-3D.
  a = man / 'AFLW2000'
  _write_jpg(a / 'image00001.jpg', _dot_image(240, 220, *pts[30]))
  scipy.io.savemat(a / 'image00001.mat', {
      'pt3d_68': np.concatenate([mat_pts, np.zeros((1, 68))]).astype(np.float32),
      'Pose_Para': np.array([[0.0, 0.25, 0.0, 0, 0, 0, 1]], np.float32)})
  # CelebA with a 68-point CSV (0-based indices); one listed image is missing.
  c = man / 'img_align_celeba'
  _write_jpg(c / '000001.jpg', _dot_image(218, 178, *pts[30]))
  with open(man / 'celeba_68.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['filename'] + [f'{a}{i}' for i in range(68) for a in 'xy'])
    for name in ('000001.jpg', '000002.jpg'):
      w.writerow([name] + list((pts - 0.5).ravel()))
    w.writerow(['000001.jpg'] + ['nan'] * 136)  # detector failure: skipped
  # AFLW-LFPA with 34 points.
  pts34 = _face_points(34)
  _write_jpg(man / 'AFLW_LFPA' / 'test' / 'face1.jpg', _dot_image(240, 220, *pts34[5]))
  vis = np.ones(34)
  vis[:3] = 0
  scipy.io.savemat(man / 'AFLW_LFPA' / 'test' / 'face1.mat',
                   {'pt2d': (pts34 + 0.5).T, 'visibility': vis, 'yaw': 12.5})
  builders = {n: _build(n, man, data) for n in ('w300lp', 'aflw2000_3d', 'celeba68', 'aflw_lfpa')}
  return builders, pts, pts34


def _check_dot(ex, index):
  np.testing.assert_allclose(_centroid(ex['image']), ex['landmarks'][index], atol=0.15)


def test_w300lp_crops_skips_bad_files_and_converts_gray(built):
  builders, pts, _ = built
  exs = {e['filename'].decode(): e for e in _examples(builders['w300lp'], 'train')}
  assert set(exs) == {'AFW/AFW_1_0', 'HELEN/HELEN_2_0'}  # truncated image, corrupt .mat skipped
  ex = exs['AFW/AFW_1_0']
  assert ex['image'].shape == (S, S, 3) and ex['image'].dtype == np.uint8
  np.testing.assert_allclose(ex['landmarks'], _expected_crop(pts), atol=1e-3)
  np.testing.assert_allclose(ex['yaw'], np.degrees(-0.5), rtol=1e-5)
  _check_dot(ex, 30)
  gray = exs['HELEN/HELEN_2_0']['image']
  assert gray.shape == (S, S, 3) and abs(int(gray[S // 2, S // 2, 0]) - 90) <= 1


def test_aflw2000_3d_without_protocol_arrays(built):
  builders, pts, _ = built
  (ex,) = _examples(builders['aflw2000_3d'], 'test')
  np.testing.assert_allclose(ex['landmarks'], _expected_crop(pts), atol=1e-3)
  np.testing.assert_allclose(ex['yaw'], np.degrees(0.25), rtol=1e-5)
  assert ex['protocol_index'] == -1 and np.all(np.isnan(ex['landmarks_reannotated']))
  _check_dot(ex, 30)


def test_celeba68_csv(built):
  builders, pts, _ = built
  (ex,) = _examples(builders['celeba68'], 'train')  # missing 000002.jpg, NaN row skipped
  np.testing.assert_allclose(ex['landmarks'], _expected_crop(pts), atol=1e-3)
  assert np.isnan(ex['yaw'])
  _check_dot(ex, 30)


def test_aflw_lfpa_34_points(built):
  builders, _, pts34 = built
  (ex,) = _examples(builders['aflw_lfpa'], 'test')
  assert ex['landmarks'].shape == (34, 2)
  np.testing.assert_allclose(ex['landmarks'], _expected_crop(pts34), atol=1e-3)
  np.testing.assert_array_equal(ex['visible'], [False] * 3 + [True] * 31)
  np.testing.assert_allclose(ex['yaw'], 12.5)
  _check_dot(ex, 5)


def test_pipeline_reads_a_built_builder(built):
  builders, _, _ = built
  it = pipeline.create_input_pipeline(builders['w300lp'], 'train', 4, image_size=16, seed=1,
                                      augment=True, process_index=0, process_count=1,
                                      local_device_count=2)
  b = next(it)
  assert b['image'].shape == (2, 2, 16, 16, 3) and b['image'].dtype == np.float32
  evals = list(pipeline.create_eval_pipeline(builders['aflw2000_3d'], 'test', 4, image_size=S,
                                             process_index=0, process_count=1,
                                             local_device_count=2))
  assert len(evals) == 1 and evals[0]['valid'].sum() == 1


@pytest.mark.parametrize('name, needle', [
    ('w300lp', '300W_LP'), ('aflw2000_3d', 'AFLW2000'), ('celeba68', 'img_align_celeba'),
    ('aflw_lfpa', 'AFLW_LFPA')])
def test_wrong_layout_says_what_and_where(tmp_path, name, needle):
  man = tmp_path / 'downloads'
  (man / 'something_else').mkdir(parents=True)
  with pytest.raises(real.LayoutError) as e:
    _build(name, man, tmp_path / 'data')
  assert needle in str(e.value) and str(man) in str(e.value)
  with pytest.raises(real.LayoutError, match='does not exist'):
    _build(name, tmp_path / 'missing', tmp_path / 'data')


def test_real_aflw2000_3d_and_300w_lp_samples(shared_data, tmp_path):
  images = shared_data / 'faces68' / 'images'
  proto = shared_data / 'aflw2000_3d_protocol'
  man = tmp_path / 'manual'
  (man / 'AFLW2000').mkdir(parents=True)
  (man / '300W_LP' / 'IBUG').mkdir(parents=True)
  for p in images.glob('image0*'):
    os.symlink(p, man / 'AFLW2000' / p.name)
  for p in images.glob('IBUG_image_008_1_0.*'):
    os.symlink(p, man / '300W_LP' / 'IBUG' / p.name)
  for n in ('AFLW2000-3D.pts68.npy', 'AFLW2000-3D_crop.roi_box.npy',
            'AFLW2000-3D-Reannotated.pts68.npy'):
    os.symlink(proto / n, man / n)
  exs = _examples(_build('aflw2000_3d', man, tmp_path / 'data'), 'test')
  assert len(exs) == 16
  pts68 = np.load(proto / 'AFLW2000-3D.pts68.npy')
  reann = np.load(proto / 'AFLW2000-3D-Reannotated.pts68.npy')
  roi = np.load(proto / 'AFLW2000-3D_crop.roi_box.npy')
  yaws = np.load(proto / 'AFLW2000-3D.pose.npy')
  offsets = []
  for ex in exs:
    row = int(ex['protocol_index'])
    mat = scipy.io.loadmat(images / (ex['filename'].decode() + '.mat'))
    np.testing.assert_array_equal(mat['pt3d_68'], pts68[row])
    np.testing.assert_allclose(ex['yaw'], yaws[row], atol=1e-3)  # signed degrees
    np.testing.assert_allclose(ex['box'], np.round(roi[row]))
    side = roi[row, 2] - roi[row, 0]
    want = (pts68[row, :2].T - 0.5 - roi[row, :2]) * S / side
    np.testing.assert_allclose(ex['landmarks'], want, atol=1e-3)
    offsets.append((ex['landmarks_reannotated'] - ex['landmarks'])[17:] * side / S)
    assert ex['image'].std() > 10
  # With 1-based original / 0-based re-annotated points the two agree on average.
  raw = (reann[:, :, 17:] - pts68[:, :2, 17:]).mean(axis=(0, 2))
  assert np.all(np.abs(raw + 1.0) < 0.1)  # the raw arrays differ by ~1 px
  assert np.all(np.abs(np.concatenate(offsets).mean(0)) < 0.5)
  (lp,) = _examples(_build('w300lp', man, tmp_path / 'data'), 'train')
  mat = scipy.io.loadmat(images / 'IBUG_image_008_1_0.mat')
  np.testing.assert_allclose(lp['yaw'], np.degrees(mat['Pose_Para'][0, 1]), rtol=1e-5)
  np.testing.assert_allclose(lp['landmarks'], _expected_crop(mat['pt2d'].T - 0.5), atol=1e-3)


def test_read_image_conversions_and_errors(tmp_path):
  rgb = np.zeros((5, 7, 3), np.uint8)
  rgb[..., 0] = 200  # red
  cv2.imwrite(str(tmp_path / 'rgba.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
  cv2.imwrite(str(tmp_path / 'gray.png'), np.full((5, 7), 77, np.uint8))
  cv2.imwrite(str(tmp_path / 'deep.png'), np.full((5, 7, 3), 65535, np.uint16))
  out = image_io.read_image(tmp_path / 'rgba.png')
  assert out.shape == (5, 7, 3) and tuple(out[0, 0]) == (200, 0, 0)
  assert tuple(image_io.read_image(tmp_path / 'gray.png')[2, 3]) == (77, 77, 77)
  deep = image_io.read_image(tmp_path / 'deep.png')
  assert deep.dtype == np.uint8 and deep.min() == 255
  cv2.imwrite(str(tmp_path / 'ok.jpg'), np.full((40, 40, 3), 128, np.uint8))
  data = open(tmp_path / 'ok.jpg', 'rb').read()
  (tmp_path / 'cut.jpg').write_bytes(data[:len(data) // 2])
  (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
  for name in ('cut.jpg', 'junk.jpg', 'absent.jpg'):
    with pytest.raises(image_io.ImageReadError, match=name):
      image_io.read_image(tmp_path / name)
  skipped = []
  assert image_io.read_image_lenient(tmp_path / 'cut.jpg', skipped) is None
  assert skipped == [str(tmp_path / 'cut.jpg')]


def test_interleaved_builders_resume_without_decoding_the_skipped_examples(built, monkeypatch):
  builders, _, _ = built
  sources = [builders['w300lp'], builders['celeba68']]  # 2 and 1 examples
  make = lambda start: pipeline.create_input_pipeline(
      sources, 'train', 2, image_size=S, seed=4, augment=True, start_position=start,
      process_index=0, process_count=1, local_device_count=1, keys=['image', 'landmarks'],
      weights=(2.0, 1.0), prefetch=0, num_parallel_calls=1)
  full = make(0)
  want = [next(full) for _ in range(22)][20:]  # the batches at positions 40 and 42
  decoded = []
  original = tfds.features.Image.decode_example

  def counting(self, example):  # counts decodes when the graph runs, not when it is traced
    count = tf.py_function(lambda: decoded.append(1) or 0, [], tf.int64)
    with tf.control_dependencies([count]):
      return tf.identity(original(self, example))

  monkeypatch.setattr(tfds.features.Image, 'decode_example', counting)
  restored = make(40)
  got = [next(restored) for _ in range(2)]
  for a, b in zip(want, got):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # 4 examples were used; the 40 before the position were skipped as undecoded records.
  assert 4 <= len(decoded) <= 10, len(decoded)


def test_builder_config_follows_the_image_size(built, tmp_path):
  assert real.builder('w300lp', 64).builder_config.name == 'size64'
  custom = real.builder('w300lp', 48)
  assert custom.builder_config.image_size == 48 and custom.info.features['image'].shape == (48, 48, 3)


def test_training_reads_the_manual_dir_of_the_config(tmp_path):
  from facernet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from facernet_jax.configs import paper  # pylint: disable=g-import-not-at-top
  man = tmp_path / 'downloads_here'
  pts = _face_points()
  _write_jpg(man / '300W_LP' / 'AFW' / 'AFW_1_0.jpg', _dot_image(240, 220, *pts[30]))
  scipy.io.savemat(man / '300W_LP' / 'AFW' / 'AFW_1_0.mat', {'pt2d': (pts + 0.5).T})
  config = paper.get_config()
  config.dataset.name, config.image_size = 'w300lp', 24
  config.dataset.data_dir = str(tmp_path / 'tfds')
  # No manual_dir: TFDS's default folder, which the error names with the field to set instead.
  with pytest.raises(real.LayoutError) as e:
    input_pipeline.dataset_source(config)
  msg = str(e.value)
  assert os.path.join(str(tmp_path / 'tfds'), 'downloads', 'manual') in msg
  assert '--config.dataset.manual_dir' in msg and '300W_LP/AFW' in msg and 'Download 300W-LP' in msg
  config.dataset.manual_dir = str(man)
  (builder,) = input_pipeline.dataset_source(config)
  assert builder.info.splits['train'].num_examples == 1
  (ex,) = _examples(builder, 'train')
  assert ex['image'].shape == (24, 24, 3)  # crops at config.image_size, not a 64 / 120 variant
  np.testing.assert_allclose(ex['landmarks'], _expected_crop(pts, 24), atol=1e-3)
