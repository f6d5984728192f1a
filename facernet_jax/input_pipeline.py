"""Training input: which datasets a config names, and the train / eval iterators over them.

Between `facernet_jax.data` (builders, tf.data pipelines) and `facernet_jax.train` (the loop):
`prepare_datasets(config)` returns the prepared training builders, `prepare_eval_datasets` the
evaluation sets (their own datasets in the paper config: AFLW2000-3D and AFLW-LFPA, not a split of
the training mixture), `create_iterator` the resumable training stream (several sources interleaved
with `config.dataset.weights`), `eval_iterator` one padded pass over an evaluation split.

Real datasets are built from the folders users download (docs/data_and_losses.md): from
`config.dataset.manual_dir` (one folder holding every dataset's download, e.g. `300W_LP/`,
`img_align_celeba/` + `celeba_68.csv`, `AFLW2000/`, `AFLW_LFPA/`), or TFDS's default
`<data_dir>/downloads/manual/` when it is ''. Their crop size is always `config.image_size`.
"""
import dataclasses
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np
import tensorflow_datasets as tfds

from facernet_jax.data import pipeline
from facernet_jax.data import real
from facernet_jax.data import synthetic_faces

TRAIN_KEYS = ('image', 'landmarks')
EVAL_KEYS = ('image', 'landmarks', 'yaw', 'mask', 'visible')
PROTOCOLS = ('nme', 'aflw2000_3d', 'lfpa')


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


def _data_dir(config):
  return config.dataset.data_dir or None


def manual_dir(config, entry=None):
  """The manual folder of a dataset: the entry's own `manual_dir`, else config.dataset.manual_dir,
  else None (TFDS's <data_dir>/downloads/manual/)."""
  own = entry.get('manual_dir', '') if entry is not None else ''
  path = own or config.dataset.get('manual_dir', '')
  return os.path.expanduser(path) if path else None


def real_dataset(config, name, manual=None):
  """The prepared real-data builder `name` at config.image_size, built from its manual folder.

  A missing or mis-laid folder raises data.real.LayoutError naming what is missing, where it goes
  (the folder and the config field) and how to get it.
  """
  if name not in real.BUILDERS:
    raise ValueError(f'config names dataset {name!r}; the real datasets are {sorted(real.BUILDERS)} '
                     "(or 'synthetic_faces' alone)")
  builder = real.builder(name, config.image_size, _data_dir(config))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
  size = tuple(builder.info.features['image'].shape[:2])
  if size != (config.image_size, config.image_size):
    raise ValueError(f'{name} was prepared with {size} crops but config.image_size is '
                     f'{config.image_size}; delete {builder.data_dir} and rebuild')
  return builder


def dataset_source(config):
  """The training builders of config.dataset.name ('a+b' interleaves datasets, e.g. 300W-LP + CelebA)."""
  if config.dataset.name == 'synthetic_faces':
    return [synthetic_faces.prepare_synthetic_faces(_data_dir(config),
                                                    synthetic_dataset_config(config))]
  builders = [real_dataset(config, name, manual_dir(config))
              for name in config.dataset.name.split('+')]
  weights = _weights(config, len(builders))
  if len(builders) > 1:  # checked here, before anything is written to the workdir
    pipeline.mixture_weights(weights, [split_size([b], config.dataset.train_split)
                                       for b in builders])
  return builders


def _weights(config, count):
  weights = tuple(config.dataset.get('weights', ()) or ()) or None
  if weights is not None and len(weights) != count:
    raise ValueError(f'config.dataset.weights={weights} needs one weight per dataset of '
                     f'config.dataset.name={config.dataset.name!r} ({count})')
  return weights


def prepare_datasets(config):
  """dataset_source(config), built by process 0 first so that processes never build concurrently."""
  return _process_0_first(lambda: dataset_source(config), 'datasets_prepared')


def _process_0_first(build, tag):
  if jax.process_count() == 1:
    return build()
  out = build() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices(f'facernet_jax.input_pipeline:{tag}')
  return out if out is not None else build()


# ----------------------------------------------------------------------------- evaluation sets

@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One evaluation dataset: `label` names it in logs, `points` 68 (the model's landmarks) or 34
  (AFLW-LFPA: the vertices in `vertex_indices`), `protocol` how it is scored (train_eval)."""
  label: str
  builders: Any
  split: str
  points: int = 68
  protocol: str = 'nme'
  vertex_indices: Any = None


def _vertex_indices(path, label):
  """The 34 face-model vertex indices of the AFLW-LFPA points (.npy of integers, no pickle)."""
  if not path:
    raise ValueError(f'config.eval_datasets.{label}.vertex_file is empty: AFLW-LFPA is scored on 34 '
                     'face-model vertices; give the .npy of their indices, made by `python -m '
                     'facernet_jax.data.real.lfpa_points --model MODEL.npz --out FILE.npy`')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config.eval_datasets.{label}.vertex_file={path!r} does not exist: make '
                            'it with `python -m facernet_jax.data.real.lfpa_points --model MODEL.npz '
                            f'--out {path}`')
  idx = np.load(path, allow_pickle=False).reshape(-1)
  if idx.shape != (34,) or idx.dtype.kind not in 'iu' or idx.min() < -1 or idx.max() < 0:
    raise ValueError(f'{path}: expected 34 integer vertex indices (-1 = not on the model, not scored; '
                     f'`python -m facernet_jax.data.real.lfpa_points` makes them), got {idx.dtype} '
                     f'{idx.shape}')
  return idx.astype(np.int32)


def eval_sets(config, builders, kind='eval'):
  """The EvalSets scored during training (kind 'eval') and at its end ('test').

  With `config.eval_datasets` (the paper config) both are those datasets; without, the training
  dataset's `dataset.eval_split` / `dataset.test_split` (the synthetic default).
  """
  entries = config.get('eval_datasets', None)
  if not entries:
    split = config.dataset.eval_split if kind == 'eval' else config.dataset.test_split
    return [EvalSet(split, builders, split)]
  checked = []
  for label, entry in entries.items():  # every entry is checked before any dataset is built
    if entry.protocol not in PROTOCOLS[1:]:
      raise ValueError(f'config.eval_datasets.{label}.protocol={entry.protocol!r}; choose from '
                       f'{PROTOCOLS[1:]}')
    if int(entry.points) not in (68, 34):
      raise ValueError(f'config.eval_datasets.{label}.points={entry.points}; choose 68 or 34')
    if (int(entry.points) == 34) != (entry.protocol == 'lfpa'):
      raise ValueError(f"config.eval_datasets.{label}: protocol 'lfpa' goes with 34 points, "
                       f"'aflw2000_3d' with 68 (got {entry.protocol!r}, {entry.points})")
    vertices = (_vertex_indices(entry.get('vertex_file', ''), label)
                if int(entry.points) == 34 else None)
    checked.append((label, entry, vertices))
  out = []
  for label, entry, vertices in checked:
    builder = real_dataset(config, entry.name, manual_dir(config, entry))
    if entry.split not in builder.info.splits:
      raise ValueError(f'config.eval_datasets.{label}.split={entry.split!r}: {entry.name} has splits '
                       f'{sorted(builder.info.splits)}')
    out.append(EvalSet(label, [builder], entry.split, int(entry.points), entry.protocol, vertices))
  return out


def prepare_eval_datasets(config, builders):
  """{'eval': [EvalSet], 'test': [EvalSet]}, built (once, process 0 first) before training starts so
  that missing evaluation data stops the run before the first step, not at the first evaluation."""
  def build():
    sets = {'eval': eval_sets(config, builders, 'eval')}
    sets['test'] = sets['eval'] if config.get('eval_datasets', None) else eval_sets(
        config, builders, 'test')
    return sets
  return _process_0_first(build, 'eval_datasets_prepared')


# ----------------------------------------------------------------------------- iterators

def create_iterator(config, builders, split, position=0):
  """Training batches (local_devices, per_device_batch, ...), resuming at `position` examples.

  Several builders are interleaved with `config.dataset.weights` (empty: proportional to their
  sizes); images are decoded after the resume skip (data.pipeline).
  """
  weights = _weights(config, len(builders))
  return pipeline.create_input_pipeline(
      builders if len(builders) > 1 else builders[0], split, config.batch_size,
      image_size=config.image_size, seed=config.seed, augment=config.dataset.augment,
      start_position=position, shuffle_buffer=config.dataset.shuffle_buffer,
      prefetch=config.dataset.prefetch, keys=list(TRAIN_KEYS), weights=weights)


def keys_of_split(builders):
  """The EVAL_KEYS the dataset provides (all sources together: only the training keys)."""
  features = set(builders[0].info.features.keys()) if len(builders) == 1 else set(TRAIN_KEYS)
  return [k for k in EVAL_KEYS if k in features]


def eval_iterator(config, builders, split):
  """One padded pass over `split` of one builder (a boolean `valid` marks real examples)."""
  if len(builders) != 1:
    raise ValueError(f'evaluation reads one dataset, got {len(builders)}: give evaluation datasets '
                     'their own config.eval_datasets entries')
  return pipeline.create_eval_pipeline(
      builders[0], split, config.eval_batch_size or config.batch_size,
      image_size=config.image_size, keys=keys_of_split(builders))


def split_size(builders, split):
  return sum(int(b.info.splits[split].num_examples) for b in builders)
