"""Checkpoints: the Orbax manager of a workdir, save / restore, `load_for_inference`, and the check
that a resumed run keeps the config its checkpoints were trained with.

workdir/checkpoints/<step>/ holds two Orbax items: 'state' (the TrainState as a dict of arrays) and
'config' (the resolved config as JSON). Everything is read back through Orbax's public API.
"""
import json
import os

from flax import serialization
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ('state', 'config')

# Fields a resumed run may change freely: how long, how often to log / evaluate / save, where the
# processes and the data folders are, what it is evaluated on. Every other field (model, face model, data, losses, optimiser, ...) shapes what the
# checkpoint was trained for; changing one needs an explicit --allow_config_change.
RESUMABLE_FIELDS = (
    'num_train_steps', 'num_epochs', 'log_every_steps', 'eval_every_steps', 'num_eval_batches',
    'eval_batch_size', 'image_every_steps', 'num_summary_images', 'checkpoint_every_steps',
    'keep_checkpoints', 'async_checkpointing', 'profile', 'final_test', 'target_nme',
    'target_psnr', 'max_consecutive_nonfinite', 'parallel', 'distributed', 'dataset.data_dir',
    'dataset.manual_dir', 'dataset.prefetch', 'eval_datasets', 'report')


def state_to_host_dict(state):
  """The state as a nested dict of numpy arrays (the checkpoint format)."""
  return serialization.to_state_dict(jax.device_get(state))


def checkpoint_manager(workdir, config, read_only=False):
  """Orbax manager over workdir/checkpoints: items 'state' (the train state) and 'config' (JSON)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=int(config.keep_checkpoints) if config is not None else None,
      enable_async_checkpointing=bool(config.async_checkpointing) if config is not None else False,
      create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options, item_names=ITEMS)


def save_checkpoint(manager, host_state, config, force=False):
  """Saves (asynchronously when configured) the host copy of the state; refuses non-finite params."""
  for leaf in jax.tree_util.tree_leaves(host_state['params']):
    if not np.all(np.isfinite(leaf)):
      raise FloatingPointError('refusing to checkpoint non-finite parameters')
  step = int(host_state['step'])
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(host_state),
      config=ocp.args.JsonSave(json.loads(config.to_json()))), force=force)


def restore_latest(manager, template_state):
  """Restores the newest complete checkpoint into `template_state`'s structure (or None)."""
  step = manager.latest_step()
  if step is None:
    return None
  target = state_to_host_dict(template_state)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return serialization.from_state_dict(template_state, jax.device_get(restored['state']))


def _manager_and_step(path):
  """(read-only manager, step) for a workdir (newest step) or one checkpoint directory."""
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    manager = checkpoint_manager(path, None, read_only=True)
    step = manager.latest_step()
    if step is None:
      manager.close()
      raise FileNotFoundError(f'no complete checkpoint under {path}/checkpoints')
    return manager, step
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.isdir(path):
    manager = ocp.CheckpointManager(
        parent, item_names=ITEMS, options=ocp.CheckpointManagerOptions(read_only=True, create=False))
    if int(name) in manager.all_steps():
      return manager, int(name)
    manager.close()
  raise FileNotFoundError(f'{path} is neither a training workdir (with checkpoints/) nor a '
                          'complete checkpoint directory (workdir/checkpoints/<step>)')


def load_for_inference(path):
  """(config, variables) from a training workdir (newest checkpoint) or one checkpoint directory.

  variables = {'params': {'network': ..., 'decoder': ...}, 'batch_stats': ...} as numpy arrays.
  """
  path = os.path.abspath(os.fspath(path))
  manager, step = _manager_and_step(path)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()))
  finally:
    manager.close()
  state = restored['state']
  variables = jax.tree_util.tree_map(
      np.asarray, {'params': state['params'], 'batch_stats': state.get('batch_stats', {})})
  return ml_collections.ConfigDict(restored['config']), variables


def write_config(workdir, config):
  """workdir/config.json: the resolved config (process 0 only)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=2, sort_keys=True))


def _flat(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def changed_fields(old, new):
  """Dotted names of the fields that differ between two config dicts, less RESUMABLE_FIELDS."""
  a, b = _flat(old), _flat(json.loads(json.dumps(new)))
  free = lambda k: any(k == f or k.startswith(f + '.') for f in RESUMABLE_FIELDS)
  return sorted(k for k in set(a) | set(b) if not free(k) and a.get(k) != b.get(k))


def check_resume_config(workdir, config, allow_change=False):
  """Refuses to resume `workdir` with a config whose model, data or loss fields differ from the
  config.json its checkpoints were trained with (ValueError naming them), unless `allow_change`.
  Returns the changed fields ([] for a new workdir)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path) or not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return []
  with open(path) as f:
    old = json.load(f)
  new = json.loads(config.to_json())
  changed = changed_fields(old, new)
  if changed and not allow_change:
    before, after = _flat(old), _flat(new)
    details = ', '.join(f'{k}: {before.get(k)!r} -> {after.get(k)!r}' for k in changed)
    raise ValueError(
        f'{workdir} holds checkpoints trained with another config; changed fields: {details}. '
        'Use a new --workdir, or pass --allow_config_change to resume with the new values.')
  return changed
