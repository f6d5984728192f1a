"""`synthetic_faces`: the embedded default dataset, rendered from the embedded morphable model.

Every example is a deterministic function of ``(config.seed, split, index)``: a per-example numpy
generator (``np.random.default_rng([seed, split_id, index])``) draws the 495 coefficients (Eq 10),
the background and the degradation; the face is rendered by the jitted ``FaceDecoder`` (Eqs 1-6)
and the rasteriser, in batches aligned to multiples of ``GENERATION_BATCH`` so that an example's
float computation never depends on which other examples were asked for.

Ground truth: 68 landmarks are the projected landmark *vertices* (3D-style, as in 300W-LP /
AFLW2000-3D: at large yaw the far-side contour points are where the occluded model points project,
not the visible silhouette), the coefficients, yaw in degrees, view depth, camera-space normals and
the face coverage mask. See docs/synthetic_data.md.

Use without TFDS: ``generate_examples(config, 'train', start, count)``. With TFDS:
``load_synthetic_faces(data_dir, split, config)`` builds into ``data_dir`` on first use.
"""
import dataclasses
import functools
import hashlib
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from facernet_jax import forward
from facernet_jax import render as render_lib
from facernet_jax.coefficients import NUM_COEFFICIENTS
from facernet_jax.coefficients import coefficient_slices
from facernet_jax.data import synthetic_scenes
from facernet_jax.face_model import build_synthetic_model

# Examples are rendered in blocks [k * B, (k + 1) * B) so results do not depend on the request.
GENERATION_BATCH = 64
SPLITS = ('train', 'validation', 'test')
_SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}
_SLICES = coefficient_slices()


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Everything that determines the dataset. Angles in degrees, lengths in model units.

  Attributes:
    image_size: side of the square images (pixels).
    model_resolution, model_seed: arguments of ``build_synthetic_model``; a training config that
      regresses these coefficients must use the same face model.
    seed: dataset seed; with the split name and the index it fixes every example.
    num_train, num_validation, num_test: split sizes.
    shape_std, texture_std, expression_std: std of the N(0, s) identity / albedo / expression
      coefficients (the model's prior is N(0, 1)).
    max_yaw: yaw ~ U(-max_yaw, max_yaw) (uniform: each 30-degree NME bin gets a third).
    pitch_std, max_pitch, roll_std, max_roll: N(0, std) clipped to +-max (300W-LP-like ranges).
    translation_xy, translation_z: translation ~ U(-t, t) per axis.
    ambient_range, directional_max, light_min_z, second_order_std, colour_std: SH lighting (Eq 6):
      ambient 0.8 + U(-ambient_range, ambient_range); one directional light of strength
      U(0, directional_max) from a random direction biased towards the camera (its z component is
      pushed up by light_min_z before normalising); band 2 ~ N(0, second_order_std); and a
      per-colour N(0, colour_std) tint on all 9 coefficients.
    blur_sigma_max, noise_std_max: degradation: blur sigma ~ U(0, max), noise std ~ U(0, max).
  """
  image_size: int = 64
  model_resolution: int = 32
  model_seed: int = 0
  seed: int = 0
  num_train: int = 4000
  num_validation: int = 500
  num_test: int = 500
  shape_std: float = 0.5
  texture_std: float = 0.7
  expression_std: float = 0.7
  max_yaw: float = 90.0
  pitch_std: float = 12.0
  max_pitch: float = 30.0
  roll_std: float = 8.0
  max_roll: float = 20.0
  translation_xy: float = 0.12
  translation_z: float = 0.6
  ambient_range: float = 0.2
  directional_max: float = 0.3
  light_min_z: float = 0.5
  second_order_std: float = 0.05
  colour_std: float = 0.03
  blur_sigma_max: float = 0.8
  noise_std_max: float = 0.03

  def num_examples(self, split):
    return {'train': self.num_train, 'validation': self.num_validation, 'test': self.num_test}[split]

  def values(self):
    """The fields that determine the data (everything but TFDS bookkeeping)."""
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base}


BUILDER_CONFIGS = (
    SyntheticFacesConfig(
        name='default', description='64 px, 4000 / 500 / 500 examples, resolution-32 synthetic model.'),
    SyntheticFacesConfig(
        name='tiny', description='For tests: 32 px, 16 / 8 / 8 examples, resolution-16 model.',
        image_size=32, model_resolution=16, num_train=16, num_validation=8, num_test=8),
)


def make_config(name=None, **overrides):
  """A ``SyntheticFacesConfig`` from a predefined name ('default' when None) plus field overrides.

  Returns the predefined object when the values equal one, else a custom config named
  ``custom_<size>px_<hash of the values>`` so that different data never share a TFDS directory.
  A name that is not predefined is used as is, with the field defaults plus ``overrides``.
  """
  predefined = {c.name: c for c in BUILDER_CONFIGS}
  if name is not None and name not in predefined:
    return SyntheticFacesConfig(name=name, description='custom configuration', **overrides)
  values = dict(predefined[name or 'default'].values())
  unknown = set(overrides) - set(values)
  if unknown:
    raise ValueError(f'unknown synthetic_faces config fields: {sorted(unknown)}')
  for key, value in overrides.items():
    values[key] = type(values[key])(value)  # 90 -> 90.0, so that the fingerprint is stable
  for config in BUILDER_CONFIGS:
    if config.values() == values:
      return config
  digest = hashlib.sha1(repr(sorted(values.items())).encode()).hexdigest()[:10]
  return SyntheticFacesConfig(name=f"custom_{values['image_size']}px_{digest}",
                              description='custom configuration', **values)


def config_from_dict(values):
  """A config from a mapping (e.g. an ``ml_collections.ConfigDict`` of the training config)."""
  return make_config(**dict(values))


def config_from_training(config):
  """The dataset config a training ``ConfigDict`` asks for.

  ``config.dataset.synthetic`` (optional mapping) holds field overrides; ``image_size`` defaults to
  ``config.image_size`` and, for a synthetic face model, ``model_resolution`` / ``model_seed`` to
  ``config.face_model.resolution`` / ``.seed`` so that the data and the decoder share one model.
  """
  synthetic = config.dataset.get('synthetic', None) if 'dataset' in config else None
  overrides = dict(synthetic.to_dict() if hasattr(synthetic, 'to_dict') else (synthetic or {}))
  overrides.setdefault('image_size', config.image_size)
  face_model = config.get('face_model', None)
  if face_model is not None and face_model.get('source', None) == 'synthetic':
    overrides.setdefault('model_resolution', face_model.get('resolution', 48))
    overrides.setdefault('model_seed', face_model.get('seed', 0))
  return make_config(**overrides)


def _split_id(split):
  return _SPLIT_IDS[split] if split in _SPLIT_IDS else 3 + zlib.crc32(split.encode()) % (1 << 20)


def example_rng(config, split, index):
  """The per-example generator: a pure function of (seed, split, index)."""
  return np.random.default_rng([int(config.seed), _split_id(split), int(index)])


def sample_coefficients(config, rng):
  """One (495,) float32 coefficient vector (Eq 10 layout) drawn from the config's distributions."""
  c = np.zeros(NUM_COEFFICIENTS, np.float32)
  for name, std in (('shape', config.shape_std), ('texture', config.texture_std),
                    ('expression', config.expression_std)):
    s = _SLICES[name]
    c[s] = rng.normal(0.0, std, s.stop - s.start)
  yaw = rng.uniform(-config.max_yaw, config.max_yaw)
  pitch = np.clip(rng.normal(0.0, config.pitch_std), -config.max_pitch, config.max_pitch)
  roll = np.clip(rng.normal(0.0, config.roll_std), -config.max_roll, config.max_roll)
  c[_SLICES['rotation']] = np.deg2rad([pitch, yaw, roll])
  t = config.translation_xy
  c[_SLICES['translation']] = [rng.uniform(-t, t), rng.uniform(-t, t),
                               rng.uniform(-config.translation_z, config.translation_z)]
  # Eq 6 lighting: ambient 0.8 + U(-a, a), one directional light from the camera's hemisphere
  # (band 1: gamma_1..3 = k * (-l_y, l_z, -l_x) gives k * a1 c1 * (n . l)), a little band 2, and a
  # per-colour tint.
  direction = rng.normal(0.0, 1.0, 3)
  direction[2] = abs(direction[2]) + config.light_min_z * np.linalg.norm(direction)
  direction /= np.linalg.norm(direction)
  strength = rng.uniform(0.0, config.directional_max)
  shared = np.zeros(9)
  shared[0] = rng.uniform(-config.ambient_range, config.ambient_range)
  shared[1:4] = strength * np.array([-direction[1], direction[2], -direction[0]])
  shared[4:] = rng.normal(0.0, config.second_order_std, 5)
  gamma = shared[None, :] + rng.normal(0.0, config.colour_std, (3, 9))
  c[_SLICES['lighting']] = gamma.reshape(-1)
  return c


@functools.lru_cache(maxsize=12)
def _renderer(image_size, model_resolution, model_seed):
  """Jitted coefficients (B, 495) -> dict of per-pixel render arrays, for one configuration."""
  model = build_synthetic_model(resolution=model_resolution, seed=model_seed)
  decoder = forward.FaceDecoder(face_model=model, image_size=image_size, trainable_bases=False)
  variables = decoder.init(jax.random.PRNGKey(0), jnp.zeros((1, NUM_COEFFICIENTS), jnp.float32))
  # Back faces are culled: the model is an open surface, and its inside is not a face.
  settings = render_lib.RasterSettings(
      image_size=image_size, mode='hard', cull_backfaces=True, background=(0.0,))
  triangles = jnp.asarray(model.triangles)

  @jax.jit
  def render(coefficients):
    out = decoder.apply(variables, coefficients)
    # Colours and camera-space normals rasterised together, so they share fragments.
    attributes = jnp.concatenate([out['colours'], out['normals']], axis=-1)
    frag = render_lib.render_mesh(out['screen'], triangles, attributes, settings)
    return dict(colour=frag.image[..., :3], normals=frag.image[..., 3:], depth=frag.depth,
                face_index=frag.face_index, landmarks=out['landmarks'], overflow=frag.overflow)

  return render


def render_coefficients(config, coefficients):
  """Renders (n, 495) coefficients with the dataset's model and camera; dict of numpy arrays.

  Keys ``colour`` (n,S,S,3) shaded face (0 outside), ``normals`` (n,S,S,3) interpolated camera-space
  vertex normals (unnormalised), ``depth`` (n,S,S) view depth (0 outside), ``face_index`` (n,S,S)
  (-1 outside), ``landmarks`` (n,68,2).
  """
  key = (config.image_size, config.model_resolution, config.model_seed)
  out = jax.device_get(_renderer(*key)(jnp.asarray(coefficients)))
  out = {name: np.array(value) for name, value in out.items()}  # writable copies
  if np.any(out.pop('overflow') > 0):
    raise RuntimeError('rasteriser pair-count overflow while rendering synthetic faces')
  return out


def _render_block(config, split, block):
  """All GENERATION_BATCH examples of one aligned block, as a dict of numpy arrays."""
  size = config.image_size
  indices = np.arange(block * GENERATION_BATCH, (block + 1) * GENERATION_BATCH)
  rngs = [example_rng(config, split, i) for i in indices]
  coefficients = np.stack([sample_coefficients(config, r) for r in rngs])
  out = render_coefficients(config, coefficients)
  mask = out['face_index'] >= 0
  images = np.empty((GENERATION_BATCH, size, size, 3), np.uint8)
  for k, r in enumerate(rngs):
    background = synthetic_scenes.random_background(r, size)
    face = np.clip(out['colour'][k], 0.0, 1.0)
    image = synthetic_scenes.composite(face, mask[k].astype(np.float32), background)
    image = synthetic_scenes.degrade(r, image, (0.0, config.blur_sigma_max),
                                     (0.0, config.noise_std_max))
    images[k] = synthetic_scenes.to_uint8(image)
  normals = out['normals'] * mask[..., None]
  norm = np.linalg.norm(normals, axis=-1, keepdims=True)
  normals = np.where(norm > 0, normals / np.maximum(norm, 1e-12), 0.0)
  return dict(
      image=images,
      landmarks=out['landmarks'].astype(np.float32),
      yaw=np.rad2deg(coefficients[:, _SLICES['rotation']][:, 1]).astype(np.float32),
      coefficients=coefficients,
      depth=np.where(mask, out['depth'], 0.0).astype(np.float32),
      normals=normals.astype(np.float32),
      mask=mask.astype(np.uint8),
  )


def generate_examples(config, split, start=0, count=None):
  """Examples ``start .. start + count - 1`` of ``split`` as a dict of stacked numpy arrays.

  Keys: ``image`` (n,S,S,3) uint8, ``landmarks`` (n,68,2) float32 continuous pixels, ``yaw`` (n,)
  float32 degrees, ``coefficients`` (n,495) float32, ``depth`` (n,S,S) float32 view depth (0 =
  background), ``normals`` (n,S,S,3) float32 camera space (0 = background), ``mask`` (n,S,S) uint8.
  ``count=None`` means to the end of the split. Indices past the split size are allowed (the
  generator is defined for every index), which notebooks may use for extra data.
  """
  if isinstance(config, str):
    config = make_config(name=config)
  if count is None:
    count = config.num_examples(split) - start
  if start < 0 or count <= 0:
    raise ValueError(f'nothing to generate: start={start}, count={count}')
  first, last = start // GENERATION_BATCH, (start + count - 1) // GENERATION_BATCH
  blocks = [_render_block(config, split, b) for b in range(first, last + 1)]
  offset = start - first * GENERATION_BATCH
  return {k: np.concatenate([b[k] for b in blocks])[offset:offset + count] for k in blocks[0]}


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Synthetic faces from the embedded morphable model (no downloads)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'Synthetic face model: shape modes free of rigid motion and scale.'}
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)

  def _info(self):
    size = self.builder_config.image_size
    zlib_encoding = tfds.features.Encoding.ZLIB
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3)),
            'landmarks': tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
            'yaw': tfds.features.Tensor(shape=(), dtype=np.float32),
            'coefficients': tfds.features.Tensor(shape=(NUM_COEFFICIENTS,), dtype=np.float32),
            'depth': tfds.features.Tensor(shape=(size, size), dtype=np.float32,
                                          encoding=zlib_encoding),
            'normals': tfds.features.Tensor(shape=(size, size, 3), dtype=np.float32,
                                            encoding=zlib_encoding),
            'mask': tfds.features.Tensor(shape=(size, size), dtype=np.uint8,
                                         encoding=zlib_encoding),
        }),
        # Examples are i.i.d. draws; keeping the generation order makes index i of a split
        # equal to generate_examples(config, split, i, 1).
        disable_shuffling=True,
        homepage='https://doi.org/10.3390/s23146713',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    config = self.builder_config
    total = config.num_examples(split)
    for block_start in range(0, total, GENERATION_BATCH):
      count = min(GENERATION_BATCH, total - block_start)
      arrays = generate_examples(config, split, block_start, count)
      for k in range(count):
        yield block_start + k, {key: value[k] for key, value in arrays.items()}


def default_data_dir():
  """``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (TFDS's own default)."""
  return os.environ.get('TFDS_DATA_DIR', os.path.expanduser('~/tensorflow_datasets'))


def prepare_synthetic_faces(data_dir=None, config=None):
  """Returns the builder, generating the dataset into ``data_dir`` first if it is not there yet.

  ``config``: a ``SyntheticFacesConfig``, a predefined name ('default', 'tiny'), a mapping of
  overrides, or None for 'default'.
  """
  if config is None:
    config = BUILDER_CONFIGS[0]
  elif isinstance(config, str):
    config = make_config(name=config)
  elif not isinstance(config, SyntheticFacesConfig):
    config = config_from_dict(config)
  builder = SyntheticFaces(config=config, data_dir=data_dir or default_data_dir())
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def load_synthetic_faces(data_dir=None, split='train', config=None, **as_dataset_kwargs):
  """A ``tf.data.Dataset`` of ``split`` (building the dataset first if needed)."""
  builder = prepare_synthetic_faces(data_dir, config)
  return builder.as_dataset(split=split, **as_dataset_kwargs)
