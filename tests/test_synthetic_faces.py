"""synthetic_faces: determinism, shapes, ground truth against an independent numpy Eqs 1-5, TFDS."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facernet_jax.data import synthetic_faces as sf
from facernet_jax.face_model import build_synthetic_model

# Small and quick: 32 px, a resolution-12 model (the test training config's).
CONFIG = sf.make_config(name='tiny', model_resolution=12, num_train=6, num_validation=3, num_test=2)
S = CONFIG.image_size


@pytest.fixture(scope='module')
def train():
  return sf.generate_examples(CONFIG, 'train', 0, 70)  # spans two generation blocks


def test_shapes_dtypes_and_ranges(train):
  expected = {'image': ((70, S, S, 3), np.uint8), 'landmarks': ((70, 68, 2), np.float32),
              'yaw': ((70,), np.float32), 'coefficients': ((70, 495), np.float32),
              'depth': ((70, S, S), np.float32), 'normals': ((70, S, S, 3), np.float32),
              'mask': ((70, S, S), np.uint8)}
  assert set(train) == set(expected)
  for key, (shape, dtype) in expected.items():
    assert train[key].shape == shape and train[key].dtype == dtype, key
  assert np.all(np.abs(train['yaw']) <= 90.0)
  assert set(np.unique(train['mask'])) <= {0, 1}
  assert np.all(np.isfinite(train['landmarks']))
  # Most landmarks are in the frame, and every face covers a good part of it.
  inside = np.all((train['landmarks'] >= 0) & (train['landmarks'] <= S), axis=-1)
  assert inside.mean() > 0.97
  assert train['mask'].mean(axis=(1, 2)).min() > 0.1
  # Pose and lighting ranges of the sampler (degrees).
  angles = np.rad2deg(train['coefficients'][:, 462:465])
  assert np.abs(angles[:, 0]).max() <= CONFIG.max_pitch + 1e-4
  assert np.abs(angles[:, 2]).max() <= CONFIG.max_roll + 1e-4
  np.testing.assert_allclose(train['yaw'], angles[:, 1], atol=1e-4)


def test_deterministic_and_independent_of_the_request(train):
  again = sf.generate_examples(CONFIG, 'train', 60, 8)  # other block boundaries
  for key in train:
    np.testing.assert_array_equal(again[key], train[key][60:68], err_msg=key)
  single = sf.generate_examples(CONFIG, 'train', 5, 1)
  np.testing.assert_array_equal(single['image'][0], train['image'][5])
  other_split = sf.generate_examples(CONFIG, 'validation', 0, 3)
  assert not np.allclose(other_split['coefficients'], train['coefficients'][:3])
  assert not np.array_equal(other_split['image'], train['image'][:3])
  other_seed = sf.generate_examples(sf.make_config(name='tiny', model_resolution=12, seed=1),
                                    'train', 0, 3)
  assert not np.allclose(other_seed['coefficients'], train['coefficients'][:3])


def test_landmarks_match_numpy_reprojection_of_the_coefficients(train):
  """Eqs 1-5 written out in float64 numpy from the model arrays (no project code)."""
  model = build_synthetic_model(resolution=CONFIG.model_resolution, seed=CONFIG.model_seed)
  focal = 1015.0 * S / 224.0
  for c, landmarks in zip(train['coefficients'][:20].astype(np.float64), train['landmarks']):
    v = (model.mean_shape.reshape(-1) + model.shape_basis @ c[0:199]
         + model.expression_basis @ c[398:462]).reshape(-1, 3)
    r = Rotation.from_euler('xyz', c[462:465]).as_matrix()  # = Rz Ry Rx
    p = v[model.landmark_indices] @ r.T + c[465:468]
    d = 10.0 - p[:, 2]
    expected = np.stack([focal * p[:, 0] / d + S / 2, S / 2 - focal * p[:, 1] / d], 1)
    np.testing.assert_allclose(landmarks, expected, atol=2e-3)


def test_mask_depth_normals_are_consistent(train):
  mask = train['mask'].astype(bool)
  np.testing.assert_array_equal(train['depth'] > 0, mask)
  np.testing.assert_array_equal(np.any(train['normals'] != 0, axis=-1), mask)
  norms = np.linalg.norm(train['normals'][mask], axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-4)
  # Back faces are culled, so visible normals face the camera (+z), up to interpolation at edges.
  assert np.mean(train['normals'][mask][:, 2] > 0) > 0.99
  # Depth is the view depth of the visible surface: a point of a triangle is never nearer than its
  # nearest vertex nor farther than its farthest, and the nose tip of a near-frontal face is visible.
  model = build_synthetic_model(resolution=CONFIG.model_resolution, seed=CONFIG.model_seed)
  checked = 0
  for k, c in enumerate(train['coefficients'].astype(np.float64)):
    v = (model.mean_shape.reshape(-1) + model.shape_basis @ c[0:199]
         + model.expression_basis @ c[398:462]).reshape(-1, 3)
    r = Rotation.from_euler('xyz', c[462:465]).as_matrix()
    view_depth = 10.0 - (v @ r.T + c[465:468])[:, 2]
    depth = train['depth'][k][mask[k]]
    assert view_depth.min() - 1e-3 <= depth.min() and depth.max() <= view_depth.max() + 1e-3
    if abs(train['yaw'][k]) < 25:
      x, y = train['landmarks'][k, 30]
      nose = view_depth[model.landmark_indices[30]]
      assert abs(train['depth'][k, int(y), int(x)] - nose) < 0.5, (k, nose)
      checked += 1
  assert checked >= 3
  # Background pixels carry the background, not the face: compositing used the mask.
  image = train['image'].astype(np.float32)
  assert image[~mask].std() > 20.0


def test_make_config_names():
  assert sf.make_config() is sf.BUILDER_CONFIGS[0]
  assert sf.make_config(name='tiny') is sf.BUILDER_CONFIGS[1]
  a = sf.make_config(image_size=48, max_yaw=60)
  b = sf.make_config(image_size=48.0, max_yaw='60')
  c = sf.make_config(image_size=48, max_yaw=61)
  assert a.name == b.name != c.name and a.name.startswith('custom_48px_')
  assert a.max_yaw == 60.0 and isinstance(a.image_size, int)
  with pytest.raises(ValueError, match='unknown'):
    sf.make_config(bogus=1)


def test_tfds_builder_round_trip(tmp_path):
  builder = sf.prepare_synthetic_faces(str(tmp_path), CONFIG)
  assert builder.info.splits['train'].num_examples == CONFIG.num_train
  for split in ('train', 'test'):
    stored = list(builder.as_dataset(split=split).as_numpy_iterator())
    expected = sf.generate_examples(CONFIG, split)
    assert len(stored) == CONFIG.num_examples(split)
    for k, example in enumerate(stored):
      for key in expected:
        np.testing.assert_array_equal(example[key], expected[key][k], err_msg=f'{split} {key}')
  # A second call finds the data and does not regenerate.
  again = sf.prepare_synthetic_faces(str(tmp_path), CONFIG)
  assert again.data_dir == builder.data_dir
  ds = sf.load_synthetic_faces(str(tmp_path), 'validation', CONFIG)
  assert len(list(ds)) == CONFIG.num_validation


def test_config_from_training_follows_the_face_model():
  ml_collections = pytest.importorskip('ml_collections')
  config = ml_collections.ConfigDict({
      'image_size': 48, 'face_model': {'source': 'synthetic', 'resolution': 20, 'seed': 3},
      'dataset': {'name': 'synthetic_faces', 'synthetic': {'num_train': 10}}})
  got = sf.config_from_training(config)
  assert (got.image_size, got.model_resolution, got.model_seed, got.num_train) == (48, 20, 3, 10)
  assert got.num_test == sf.BUILDER_CONFIGS[0].num_test
