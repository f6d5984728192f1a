"""tf.data input pipeline: per-process sharding, per-device batches, exact restore.

Why tf.data (not grain): grain is not a dependency, TFDS builders already give
tf.data datasets, and the two properties we need -- a deterministic stream and
stateless per-example augmentation -- are cheap to get with seeded per-epoch
shuffles plus `skip`.

The training stream of one process is: its shard of the split, then for epoch
e = 0, 1, ... a shuffle seeded by (seed, e) (buffer `shuffle_buffer`), the
examples of all epochs back to back. Example number `i` of that local stream
is augmented with the stateless seed (seed, i * process_count + process_index).
The position is the number of *global* examples consumed
(= batches yielded * global_batch_size); restoring at a position p rebuilds the
stream at epoch (p / process_count) // n and skips the rest of that epoch
without decoding, so the next batches are identical to the uninterrupted run.

Several sources (e.g. 300W-LP + CelebA) are interleaved example by example: pick number i of the
local stream comes from source k with probability weights[k], drawn in blocks of `MIX_BLOCK` picks
from numpy generators seeded by (seed, block). Each source runs its own epochs as above. Restoring
at a position recounts the picks before it (cheap: no data is read), starts each source at its own
epoch and skips its own remainder, still on the undecoded records; images are decoded only after
the skip.
"""
from typing import Any, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from facernet_jax.data import augment as augment_lib

_SEED_MIX = 0x9E3779B1  # keeps epoch seeds of nearby base seeds apart.


def _resolve_processes(process_index, process_count, local_device_count):
  if None in (process_index, process_count, local_device_count):
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    local_device_count = (jax.local_device_count() if local_device_count is None
                          else local_device_count)
  return process_index, process_count, local_device_count


def _load_source(source, split, process_index, process_count, data_dir=None):
  """Returns (local undecoded dataset, decode_fn, num local examples)."""
  if isinstance(source, str):
    source = tfds.builder(source, data_dir=data_dir)
  if isinstance(source, tfds.core.DatasetBuilder):
    sub = tfds.split_for_jax_process(split, process_index=process_index,
                                     process_count=process_count)
    decoders = {'image': tfds.decode.SkipDecoding()}
    ds = source.as_dataset(split=sub, shuffle_files=False, decoders=decoders,
                           read_config=tfds.ReadConfig(interleave_cycle_length=1))
    features = source.info.features

    def decode(ex):
      ex = dict(ex)
      ex['image'] = features['image'].decode_example(ex['image'])
      return ex

    n = int(ds.cardinality().numpy())
    return ds, decode, n
  if isinstance(source, tf.data.Dataset):
    ds = source.shard(process_count, process_index)
    n = int(ds.cardinality().numpy())
    if n < 0:
      n = int(ds.reduce(np.int64(0), lambda c, _: c + 1).numpy())
    return ds, (lambda ex: dict(ex)), n
  raise TypeError(f'source must be a TFDS builder, a registered dataset name or a '
                  f'tf.data.Dataset, got {type(source).__name__}')


def preprocess(example, image_size):
  """uint8 / gray / odd-sized image -> float32 [0, 1] (S, S, 3); landmarks scaled.

  A square image of another size is resized (landmarks scale exactly by
  image_size / size in continuous pixels); a non-square one is resized too,
  with x and y scaled separately.
  """
  ex = dict(example)
  image = ex['image']
  if image.shape.rank == 2:
    image = image[..., None]
  image = tf.image.convert_image_dtype(image, tf.float32)
  image = image[..., :3]
  image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]),
                  lambda: image)
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  size = float(image_size)
  same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))

  def resize():
    out = tf.image.resize(image, [image_size, image_size], method='bilinear', antialias=True)
    return tf.clip_by_value(out, 0.0, 1.0)

  image = tf.cond(same, lambda: image, resize)
  ex['image'] = tf.ensure_shape(image, [image_size, image_size, 3])
  if 'landmarks' in ex:
    lm = tf.cast(ex['landmarks'], tf.float32)
    ex['landmarks'] = lm * tf.stack([size / w, size / h])
  if 'yaw' in ex:
    ex['yaw'] = tf.cast(ex['yaw'], tf.float32)
  return ex


def _to_device_batches(batch, local_device_count):
  def reshape(x):
    x = np.asarray(x)
    return x.reshape((local_device_count, -1) + x.shape[1:])
  return {k: reshape(v) for k, v in batch.items()}


MIX_BLOCK = 4096


def _source_name(source):
  return getattr(source, 'name', None) or (source if isinstance(source, str) else 'the source')


def mixture_weights(weights, sizes):
  """Normalised mixture probabilities; None = proportional to `sizes`."""
  w = np.asarray(sizes if weights is None or len(weights) == 0 else weights, np.float64)
  if w.shape != (len(sizes),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
    raise ValueError(f'mixture weights {weights!r}: need one positive number per source '
                     f'({len(sizes)} sources)')
  return w / w.sum()


def _selector_block(seed, block, probs):
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(block), 0x5EED])
  return rng.choice(len(probs), MIX_BLOCK, p=probs).astype(np.int64)


def mixture_counts(seed, probs, position):
  """How many of the first `position` picks of the mixture took each source."""
  full, part = divmod(int(position), MIX_BLOCK)
  counts = np.zeros(len(probs), np.int64)
  for b in range(full):
    counts += np.bincount(_selector_block(seed, b, probs), minlength=len(probs))
  if part:
    counts += np.bincount(_selector_block(seed, full, probs)[:part], minlength=len(probs))
  return counts


def mixture_selector(seed, probs, position):
  """tf.data stream of source indices from pick `position` on (see the module docstring)."""
  first, part = divmod(int(position), MIX_BLOCK)
  block = lambda b: _selector_block(seed, b, probs)
  blocks = tf.data.Dataset.range(first, 2**62).map(
      lambda b: tf.ensure_shape(tf.numpy_function(block, [b], tf.int64), [MIX_BLOCK]))
  return blocks.unbatch().skip(part)


class InputPipeline:
  """Iterator of numpy batches {key: (local_devices, per_device_batch, ...)}.

  `position` is the number of global examples consumed so far; save it (e.g. in
  the train state's `data_position`) and pass it as `start_position` to
  `create_input_pipeline` to continue exactly.
  """

  def __init__(self, dataset, start_position, global_batch_size, local_device_count):
    self._it = dataset.as_numpy_iterator()
    self.position = int(start_position)
    self.global_batch_size = global_batch_size
    self.local_device_count = local_device_count
    self.dataset = dataset

  def __iter__(self) -> Iterator[dict[str, Any]]:
    return self

  def __next__(self):
    batch = next(self._it)
    self.position += self.global_batch_size
    return _to_device_batches(batch, self.local_device_count)


def create_input_pipeline(source, split, global_batch_size, *, image_size, seed=0,
                          augment=False, start_position=0, process_index=None,
                          process_count=None, local_device_count=None,
                          shuffle=True, shuffle_buffer=10_000, prefetch=2,
                          num_parallel_calls=None, data_dir=None,
                          keys=None, weights=None) -> InputPipeline:
  """Infinite training iterator (see the module docstring).

  Args:
    source: a TFDS builder (built), a registered TFDS name (with `data_dir`),
      or a tf.data.Dataset of example dicts (then `split` is ignored); or a list of
      them, interleaved with `weights` (all TFDS, or all tf.data, with common keys).
    split: TFDS split name, e.g. 'train'.
    global_batch_size: examples per step over all processes and devices; must
      divide by process_count * local_device_count.
    image_size: output side S; other sizes are resized (landmarks follow).
    seed: base seed of the shuffles and the augmentation.
    augment: apply Sec 4.1 augmentation (facernet_jax.data.augment).
    start_position: global examples already consumed (multiple of the batch).
    process_index, process_count, local_device_count: default from jax.
    shuffle, shuffle_buffer: per-epoch seeded shuffle buffer.
    prefetch: batches prefetched by tf.data (0 = none).
    keys: optional list of feature names to keep (default all; several sources:
      the features they share).
    weights: one positive number per source (normalised); None = proportional
      to the sources' sizes, i.e. the mixture of the concatenated datasets.
  Returns:
    InputPipeline with images float32 [0, 1], landmarks float32, yaw float32
    and every other feature passed through.
  """
  pi, pc, ldc = _resolve_processes(process_index, process_count, local_device_count)
  if global_batch_size % (pc * ldc):
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by '
                     f'process_count * local_device_count = {pc} * {ldc}')
  if start_position % global_batch_size:
    raise ValueError(f'start_position {start_position} is not a multiple of '
                     f'global_batch_size {global_batch_size}')
  local_batch = global_batch_size // pc
  sources = list(source) if isinstance(source, (list, tuple)) else [source]
  loaded = [_load_source(src, split, pi, pc, data_dir) for src in sources]
  for (_, _, n), src in zip(loaded, sources):
    if n <= 0:
      raise ValueError(f'split {split!r} of {_source_name(src)} has no examples for process {pi} '
                       f'of {pc}')
  local_start = start_position // pc

  def epochs(k, first_epoch):
    ds, _, n = loaded[k]

    def epoch_ds(epoch):
      if not shuffle:
        return ds
      s = (tf.cast(epoch, tf.int64) * _SEED_MIX + seed * 1_000_003 + 17 + k * 7_919) % (2**31 - 1)
      return ds.shuffle(min(shuffle_buffer, n), seed=s, reshuffle_each_iteration=False)

    return tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_ds)

  if len(sources) == 1:
    ds, decode, n = loaded[0]
    first_epoch, skip = divmod(local_start, n)
    stream = epochs(0, first_epoch).skip(skip)
  else:
    probs = mixture_weights(weights, [n for _, _, n in loaded])
    counts = mixture_counts(seed, probs, local_start)
    common_keys = set.intersection(*(set(ds.element_spec) for ds, _, _ in loaded))
    wanted = [k for k in (keys if keys is not None else sorted(common_keys))]
    missing = [k for k in wanted if k not in common_keys]
    if missing:
      raise ValueError(f'features {missing} are not in every source; keep only common keys')
    kinds = {ds.element_spec['image'].dtype for ds, _, _ in loaded}
    if len(kinds) > 1:
      raise ValueError('sources to interleave must all be TFDS builders or all tf.data datasets '
                       f'(their undecoded images have dtypes {sorted(map(str, kinds))})')
    streams = []
    for k, (_, _, n) in enumerate(loaded):
      first_epoch, skip = divmod(int(counts[k]), n)
      streams.append(epochs(k, first_epoch).skip(skip).map(
          lambda ex, k=k: {**{key: ex[key] for key in wanted}, '_source': tf.constant(k, tf.int64)}))
    stream = tf.data.Dataset.choose_from_datasets(
        streams, mixture_selector(seed, probs, local_start), stop_on_empty_dataset=True)
    decoders = [d for _, d, _ in loaded]

    def decode(ex):  # Each source decodes its own images (after the skip and the mixing).
      ex = dict(ex)
      k = tf.cast(ex.pop('_source'), tf.int32)
      ex['image'] = tf.switch_case(
          k, [lambda d=d: d({'image': ex['image']})['image'] for d in decoders])
      return ex

  stream = tf.data.Dataset.zip(tf.data.Dataset.range(local_start, 2**62), stream)

  def process(index, ex):
    ex = preprocess(decode(ex), image_size)
    if keys is not None:
      ex = {k: ex[k] for k in keys}
    if augment:
      ex = augment_lib.augment_example(
          ex, tf.stack([tf.constant(seed, tf.int64), index * pc + pi]))
    return ex

  options = tf.data.Options()
  options.deterministic = True
  stream = stream.with_options(options)
  stream = stream.map(process, num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
                      deterministic=True)
  stream = stream.batch(local_batch, drop_remainder=True)
  if prefetch:
    stream = stream.prefetch(prefetch)
  return InputPipeline(stream, start_position, global_batch_size, ldc)


def create_eval_pipeline(source, split, global_batch_size, *, image_size,
                         process_index=None, process_count=None,
                         local_device_count=None, data_dir=None, keys=None,
                         prefetch=2):
  """One pass over `split`, nothing dropped: the last batches are padded.

  Every process yields the same number of batches (padding with zero examples
  where its shard is shorter), each with a boolean `valid` (local_devices,
  per_device_batch) marking real examples. No augmentation, no shuffle.
  """
  pi, pc, ldc = _resolve_processes(process_index, process_count, local_device_count)
  if global_batch_size % (pc * ldc):
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by '
                     f'process_count * local_device_count = {pc} * {ldc}')
  local_batch = global_batch_size // pc
  ds, decode, n = _load_source(source, split, pi, pc, data_dir)
  max_local = n
  if isinstance(source, tf.data.Dataset):
    total = int(source.cardinality().numpy())
    if total >= 0:
      max_local = -(-total // pc)
  elif isinstance(source, (str, tfds.core.DatasetBuilder)):
    builder = tfds.builder(source, data_dir=data_dir) if isinstance(source, str) else source
    max_local = -(-builder.info.splits[split].num_examples // pc)
  num_batches = max(1, -(-max_local // local_batch))

  def process(ex):
    ex = preprocess(decode(ex), image_size)
    if keys is not None:
      ex = {k: ex[k] for k in keys}
    ex['valid'] = tf.constant(True)
    return ex

  ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  zeros = tf.nest.map_structure(
      lambda s: tf.zeros([d if d is not None else 0 for d in s.shape], s.dtype),
      ds.element_spec)
  pad = tf.data.Dataset.from_tensors(zeros).repeat()
  ds = ds.concatenate(pad).take(num_batches * local_batch)
  ds = ds.batch(local_batch, drop_remainder=True)
  if prefetch:
    ds = ds.prefetch(prefetch)
  for batch in ds.as_numpy_iterator():
    yield _to_device_batches(batch, ldc)
