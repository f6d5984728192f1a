"""Every config value checked before anything is written to the workdir.

`validate_config(config)` raises ValueError naming the field, its value and the allowed range or
choices (instead of a TensorFlow or XLA error deep in the run, after config.json and checkpoints/
were written). RULES is the table; fields a config does not have are skipped, fields it has that
RULES does not name are left to the code that reads them.
"""
import numbers

from facernet_jax import models


class _Number:
  """An int (or any real, integer=False) in [lo, hi], or one of `also` (e.g. -1 = off)."""

  def __init__(self, lo=None, hi=None, integer=True, also=(), strict_lo=False):
    self.lo, self.hi, self.integer, self.also, self.strict_lo = lo, hi, integer, also, strict_lo

  def describe(self):
    kind = 'an integer' if self.integer else 'a number'
    parts = []
    if self.lo is not None:
      parts.append(f'{">" if self.strict_lo else ">="} {self.lo}')
    if self.hi is not None:
      parts.append(f'<= {self.hi}')
    text = f'{kind} {" and ".join(parts)}'.strip()
    return text + ''.join(f' or {a}' for a in self.also)

  def ok(self, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
      return False
    if v in self.also:
      return True
    if self.integer and int(v) != v:
      return False
    if v != v:  # NaN
      return False
    if self.lo is not None and (v <= self.lo if self.strict_lo else v < self.lo):
      return False
    return self.hi is None or v <= self.hi


class _Choice:
  def __init__(self, *choices):
    self.choices = choices

  def describe(self):
    return 'one of ' + ', '.join(repr(c) for c in self.choices)

  def ok(self, v):
    return v in self.choices


class _Bool:
  def describe(self):
    return 'True or False'

  def ok(self, v):
    return isinstance(v, bool)


class _Text:
  def describe(self):
    return 'a non-empty string'

  def ok(self, v):
    return isinstance(v, str) and bool(v.strip())


POSITIVE = _Number(0, integer=False, strict_lo=True)
NON_NEGATIVE = _Number(0, integer=False)

RULES = {
    'seed': _Number(0, 2**31 - 1),
    'image_size': _Number(16, 1024),
    'face_model.source': _Text(),
    'face_model.resolution': _Number(8, 1024),
    'face_model.seed': _Number(0, 2**31 - 1),
    'trainable_bases': _Bool(),
    'model.name': _Choice(*sorted(models.MODELS)),
    'model.width': _Number(0, 8, integer=False, strict_lo=True),
    'model.use_attention': _Bool(),
    'model.use_multiscale': _Bool(),
    'model.use_decoder': _Bool(),
    'model.coord_channels': _Bool(),
    'model.appearance_branch': _Bool(),
    'model.attention_reduction': _Number(1, 64),
    'model.depthwise': _Choice('auto', 'conv', 'shifted'),
    'model.output_scales.*': POSITIVE,
    'raster.mode': _Choice('hard', 'soft'),
    'raster.faces_per_pixel': _Number(1, 64),
    'raster.sigma': POSITIVE,
    'raster.gamma': POSITIVE,
    'raster.znear': POSITIVE,
    'raster.zfar': POSITIVE,
    'raster.chunk_size': _Number(1, also=(None,)),
    'render_geometry_gradient': _Bool(),
    'dataset.name': _Text(),
    'dataset.train_split': _Text(),
    'dataset.eval_split': _Text(),
    'dataset.test_split': _Text(),
    'dataset.augment': _Bool(),
    'dataset.shuffle_buffer': _Number(1),
    'dataset.prefetch': _Number(0, 64),
    'dataset.synthetic.num_train': _Number(1),
    'dataset.synthetic.num_validation': _Number(1),
    'dataset.synthetic.num_test': _Number(1),
    'loss_weights.*': NON_NEGATIVE,
    'reg_weights.*': NON_NEGATIVE,
    'land_error_start_epoch': _Number(0),
    'optimizer': _Choice('adam', 'sgd'),
    'learning_rate': _Number(0, 10, integer=False, strict_lo=True),
    'decoder_lr_scale': NON_NEGATIVE,
    'lr_schedule': _Choice('constant', 'cosine'),
    'warmup_steps': _Number(0),
    'grad_clip_norm': NON_NEGATIVE,
    'batch_size': _Number(1, 1 << 20),
    'num_epochs': POSITIVE,
    'num_train_steps': _Number(1, also=(-1, 0)),
    'parallel': _Choice('pmap', 'jit'),
    'distributed.initialize': _Bool(),
    'distributed.num_processes': _Number(1, also=(-1,)),
    'distributed.process_id': _Number(0, also=(-1,)),
    'max_consecutive_nonfinite': _Number(0),
    'log_every_steps': _Number(1),
    'eval_every_steps': _Number(0),
    'num_eval_batches': _Number(1, also=(-1,)),
    'eval_batch_size': _Number(0),
    'image_every_steps': _Number(0),
    'num_summary_images': _Number(1),
    'checkpoint_every_steps': _Number(1),
    'keep_checkpoints': _Number(1),
    'async_checkpointing': _Bool(),
    'profile': _Bool(),
    'final_test': _Bool(),
    'report': _Bool(),
    'target_nme': POSITIVE,
    'target_psnr': POSITIVE,
}


def _values(config, name):
  """[(dotted field, value)] of `name` in `config` ('a.*' = every entry of a); [] if absent."""
  *parents, last = name.split('.')
  node = config
  prefix = ''
  for part in parents:
    node = node.get(part, None) if hasattr(node, 'get') else None
    if node is None:
      return []
    prefix += part + '.'
  if last == '*':
    return [(prefix + k, v) for k, v in node.items()]
  if not hasattr(node, 'get') or last not in node:
    return []
  return [(prefix + last, node[last])]


def validate_config(config, device_count=None):
  """Raises ValueError for the first field outside its allowed range, naming it; also checks
  the fields' relations (batch divisible by the devices, process id below the process count)."""
  errors = []
  for name, rule in RULES.items():
    if name.startswith('face_model.') and name != 'face_model.source' and (
        config.face_model.get('source', '') != 'synthetic'):
      continue
    for field, value in _values(config, name):
      if not rule.ok(value):
        errors.append(f'config.{field}={value!r} is not allowed: must be {rule.describe()}')
  if not errors:
    if config.num_train_steps in (-1, 0) and not config.get('num_epochs', 0) > 0:
      errors.append('config.num_epochs must be > 0 when config.num_train_steps <= 0')
    dist = config.get('distributed', None)
    if dist is not None and dist.num_processes > 0 and dist.process_id >= dist.num_processes:
      errors.append(f'config.distributed.process_id={dist.process_id} must be below '
                    f'config.distributed.num_processes={dist.num_processes}')
    if config.get('eval_batch_size', 0) and device_count and config.eval_batch_size % device_count:
      errors.append(f'config.eval_batch_size={config.eval_batch_size} must be a multiple of the '
                    f'{device_count} devices')
    if device_count and config.batch_size % device_count:
      errors.append(f'config.batch_size={config.batch_size} must be a multiple of the '
                    f'{device_count} devices (jax.device_count())')
  if errors:
    raise ValueError('invalid config: ' + '; '.join(errors))
