"""Training input: which datasets a config names, and the train / eval iterators over them.

Between `facernet_jax.data` (builders, tf.data pipelines) and `facernet_jax.train` (the loop):
`prepare_datasets(config)` returns the prepared TFDS builders, `create_iterator` the resumable
training stream, `eval_iterator` one padded pass over an evaluation split.
"""
import jax

def synthetic_dataset_config(config):
  """The synthetic_faces builder config implied by the training config (same face model and size)."""
  values = dict(config.dataset.get('synthetic', None) or {})
  implied = {'image_size': config.image_size, 'model_resolution': config.face_model.resolution,
             'model_seed': config.face_model.seed}
  for key, value in implied.items():
    if values.setdefault(key, value) != value:
      raise ValueError(f'config.dataset.synthetic.{key}={values[key]} does not match the training '
                       f'config ({value}): the data must come from the same face model and size')
  return values


def dataset_source(config):
  """A TFDS builder for config.dataset.name ('a+b' concatenates datasets, e.g. 300W-LP + CelebA)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config.dataset.data_dir or None
  if config.dataset.name == 'synthetic_faces':
    from facernet_jax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
    return [synthetic_faces.prepare_synthetic_faces(data_dir, synthetic_dataset_config(config))]
  from facernet_jax.data import real  # pylint: disable=g-import-not-at-top,unused-import
  builders = []
  for name in config.dataset.name.split('+'):
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
    builders.append(builder)
  return builders


def prepare_datasets(config):
  """dataset_source(config), built by process 0 first so that processes never build concurrently."""
  if jax.process_count() == 1:
    return dataset_source(config)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  builders = dataset_source(config) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('facernet_jax.train:datasets_prepared')
  return builders if builders is not None else dataset_source(config)


def _source_for_split(builders, split, keys):
  """One builder, or the concatenation of several (only `keys`, images decoded)."""
  if len(builders) == 1:
    return builders[0]
  datasets = [b.as_dataset(split=split, shuffle_files=False).map(
      lambda ex: {k: ex[k] for k in keys}) for b in builders]
  out = datasets[0]
  for ds in datasets[1:]:
    out = out.concatenate(ds)
  return out


TRAIN_KEYS = ('image', 'landmarks')
EVAL_KEYS = ('image', 'landmarks', 'yaw', 'mask')


def create_iterator(config, builders, split, position=0):
  """Training batches (local_devices, per_device_batch, ...), resuming at `position` examples."""
  from facernet_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.create_input_pipeline(
      _source_for_split(builders, split, TRAIN_KEYS), split, config.batch_size,
      image_size=config.image_size, seed=config.seed, augment=config.dataset.augment,
      start_position=position, shuffle_buffer=config.dataset.shuffle_buffer,
      prefetch=config.dataset.prefetch, keys=list(TRAIN_KEYS))


def keys_of_split(builders):
  """The EVAL_KEYS the dataset provides (all sources together: only the training keys)."""
  features = set(builders[0].info.features.keys()) if len(builders) == 1 else set(TRAIN_KEYS)
  return [k for k in EVAL_KEYS if k in features]


def eval_iterator(config, builders, split):
  """One padded pass over `split` (a boolean `valid` marks real examples)."""
  from facernet_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  keys = keys_of_split(builders)
  return pipeline.create_eval_pipeline(
      _source_for_split(builders, split, keys), split, config.eval_batch_size or config.batch_size,
      image_size=config.image_size, keys=keys)


def split_size(builders, split):
  return sum(int(b.info.splits[split].num_examples) for b in builders)


