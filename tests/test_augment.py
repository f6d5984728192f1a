"""Tests of the 68-point flip permutation and the Sec 4.1 augmentation."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

from facernet_jax.data import augment
from facernet_jax import landmarks as lmk


def test_flip_permutation_is_an_involution_with_the_expected_fixed_points():
  perm = lmk.FLIP_PERMUTATION
  np.testing.assert_array_equal(perm[perm], np.arange(68))
  fixed = set(np.flatnonzero(perm == np.arange(68)))
  assert fixed == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}


def test_flip_permutation_maps_the_mirrored_bfm_template_onto_itself(shared_data):
  # Independent derivation: the BFM mean face's 68 landmark vertices (3DDFA's
  # keypoints_sim) are left/right symmetric; mirror x and match each mirrored
  # point to its nearest original one by optimal assignment.
  keypoints = np.load(shared_data / 'aflw2000_3d_protocol' / 'keypoints_sim.npy')
  mean = (np.load(shared_data / 'bfm_topology' / 'u_shp.npy')
          + np.load(shared_data / 'bfm_topology' / 'u_exp.npy')).ravel()
  pts = mean[keypoints].reshape(68, 3)[:, :2]
  pts = pts - pts.mean(0)
  mirrored = pts * np.array([-1.0, 1.0])
  cost = np.linalg.norm(mirrored[:, None] - pts[None], axis=-1)
  _, match = linear_sum_assignment(cost)
  np.testing.assert_array_equal(match, lmk.FLIP_PERMUTATION)


def test_flip_twice_is_identity():
  rng = np.random.default_rng(0)
  image = tf.constant(rng.random((9, 12, 3)), tf.float32)
  lm = tf.constant(rng.random((68, 2)) * [12, 9], tf.float32)
  im2, lm2 = augment.flip(*augment.flip(image, lm))
  np.testing.assert_array_equal(im2.numpy(), image.numpy())
  np.testing.assert_allclose(lm2.numpy(), lm.numpy(), atol=1e-5)
  # And once is a mirror: the numpy helper agrees.
  _, lm1 = augment.flip(image, lm)
  np.testing.assert_allclose(lm1.numpy(), lmk.flip_landmarks(lm.numpy(), 12), atol=1e-5)


def _dot_image(h, w, x, y, sigma=1.2):
  """A Gaussian dot centred at continuous pixel (x, y)."""
  jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
  d = np.exp(-((jj - x) ** 2 + (ii - y) ** 2) / (2 * sigma ** 2))
  return np.repeat(d[..., None], 3, axis=-1).astype(np.float32)


def _centroid(image):
  m = image[..., 0].astype(np.float64)
  jj, ii = np.meshgrid(np.arange(m.shape[1]) + 0.5, np.arange(m.shape[0]) + 0.5)
  return np.array([np.sum(m * jj), np.sum(m * ii)]) / np.sum(m)


@pytest.mark.parametrize('seed', [0, 1, 2, 3, 4, 5])
def test_dot_drawn_at_a_landmark_lands_on_the_transformed_landmark(seed):
  h, w = 40, 48
  lm = np.zeros((68, 2), np.float32)
  lm[:] = [w / 2, h / 2]
  lm[36] = [17.3, 14.8]  # subject's right eye corner; the flip moves it to index 45
  image = _dot_image(h, w, *lm[36])
  ex = {'image': tf.constant(image), 'landmarks': tf.constant(lm), 'yaw': tf.constant(20.0)}
  out = augment.augment_example(ex, tf.constant([seed, 7], tf.int64))
  flipped, rotated, angle, scale = [np.asarray(v) for v in augment.sample_params(
      tf.constant([seed, 7], tf.int64))]
  idx = 45 if flipped else 36
  got = out['landmarks'].numpy()[idx]
  img = out['image'].numpy() / scale  # undo the (unclipped) colour scale
  np.testing.assert_allclose(_centroid(img), got, atol=0.08)
  assert float(out['yaw']) == (-20.0 if flipped else 20.0)


def test_rotation_direction_is_clockwise_on_screen():
  pts = tf.constant([[30.0, 20.0]])  # right of the centre (20, 20)
  out = augment.rotate_points(pts, 90.0, 40, 40).numpy()
  np.testing.assert_allclose(out, [[20.0, 30.0]], atol=1e-4)  # now below it (y down)
  image = _dot_image(40, 40, 30.0, 20.0)
  rotated = augment.rotate_image(tf.constant(image), 90.0).numpy()
  np.testing.assert_allclose(_centroid(rotated), [20.0, 30.0], atol=0.05)


def test_augmentation_is_deterministic_and_sampled_as_sec_4_1():
  rng = np.random.default_rng(1)
  ex = {'image': tf.constant(rng.random((16, 16, 3)), tf.float32),
        'landmarks': tf.constant(rng.random((68, 2)) * 16, tf.float32)}
  a = augment.augment_example(ex, tf.constant([3, 4], tf.int64))
  b = augment.augment_example(ex, tf.constant([3, 4], tf.int64))
  np.testing.assert_array_equal(a['image'].numpy(), b['image'].numpy())
  draws = [augment.sample_params(tf.constant([9, i], tf.int64)) for i in range(300)]
  flips = np.mean([bool(d[0]) for d in draws])
  rots = np.mean([bool(d[1]) for d in draws])
  angles = np.array([float(d[2]) for d in draws])
  scales = np.stack([d[3].numpy() for d in draws])
  assert 0.4 < flips < 0.6 and 0.4 < rots < 0.6
  assert angles.min() >= -30 and angles.max() <= 30 and angles.min() < -25 and angles.max() > 25
  assert scales.min() >= 0.6 and scales.max() <= 1.2
  assert abs(np.corrcoef(scales[:, 0], scales[:, 1])[0, 1]) < 0.2  # independent channels


def test_colour_scale_per_channel():
  image = tf.fill([2, 2, 3], 0.5)
  out = augment.colour_scale(image, tf.constant([0.6, 1.0, 1.2])).numpy()
  np.testing.assert_allclose(out[0, 0], [0.3, 0.5, 0.6], rtol=1e-6)
  np.testing.assert_allclose(augment.colour_scale(tf.fill([1, 1, 3], 0.9),
                                                  tf.constant([1.2, 1.2, 1.2])).numpy(), 1.0)


def test_synthetic_ground_truth_is_refused():
  ex = {'image': tf.zeros([8, 8, 3]), 'landmarks': tf.zeros([68, 2]),
        'coefficients': tf.zeros([495])}
  with pytest.raises(ValueError, match='augment=False'):
    augment.augment_example(ex, tf.constant([0, 0], tf.int64))


def test_light_modules_do_not_import_tensorflow():
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = pathlib.Path(__file__).resolve().parents[1]
  code = ('import sys, facernet_jax.landmarks, facernet_jax.data.landmarks, facernet_jax.data.image_io; '
          'print("tensorflow" in sys.modules)')
  env = dict(os.environ, PYTHONPATH=str(repo))
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True, timeout=60)
  assert out.stdout.strip() == 'False'
