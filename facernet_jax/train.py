"""Training and evaluation of Mobile-FaceRNet (Sec 3.4, 4.1): the loop and the CLI.

  python -m facernet_jax.train --config=facernet_jax/configs/default.py --workdir=runs/default

Layout follows google/flax examples/imagenet and big_vision; each job has its own module under
facernet_jax/training/: `state` (networks, optimiser, TrainState), `step` (Eq 11, train_step,
eval_step), `parallel` (pmap or jit + NamedSharding, prefetch, multi-host), `checkpoint` (Orbax,
load_for_inference, the resume check) and `validate` (config values). This module runs the loop
(data from `input_pipeline`, evaluation and summaries from `train_eval`), which syncs with the host
only at log, summary, eval and checkpoint steps. Their public names stay importable from here. See docs/training.md.
"""
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
from ml_collections import config_flags
import numpy as np

from facernet_jax import input_pipeline
from facernet_jax import run_report
from facernet_jax import train_eval
from facernet_jax.training import validate
from facernet_jax.training.checkpoint import check_resume_config
from facernet_jax.training.checkpoint import checkpoint_manager
from facernet_jax.training.checkpoint import load_for_inference
from facernet_jax.training.checkpoint import restore_latest
from facernet_jax.training.checkpoint import save_checkpoint
from facernet_jax.training.checkpoint import state_to_host_dict
from facernet_jax.training.checkpoint import write_config
from facernet_jax.training.parallel import AXIS
from facernet_jax.training.parallel import broadcast_from_process_0
from facernet_jax.training.parallel import DataParallel
from facernet_jax.training.parallel import maybe_initialize_distributed
from facernet_jax.training.state import build_face_model
from facernet_jax.training.state import create_learning_rate_fn
from facernet_jax.training.state import create_networks
from facernet_jax.training.state import create_optimizer
from facernet_jax.training.state import create_train_state
from facernet_jax.training.state import init_rng
from facernet_jax.training.state import initialized
from facernet_jax.training.state import num_train_steps
from facernet_jax.training.state import raster_settings
from facernet_jax.training.state import TrainState
from facernet_jax.training.step import apply_model
from facernet_jax.training.step import compute_loss_terms
from facernet_jax.training.step import eval_step
from facernet_jax.training.step import make_steps
from facernet_jax.training.step import per_point_error
from facernet_jax.training.step import preprocess
from facernet_jax.training.step import reg_weights
from facernet_jax.training.step import train_step

__all__ = [
    'AXIS', 'DataParallel', 'TrainState', 'apply_model', 'broadcast_from_process_0',
    'build_face_model', 'check_nonfinite', 'check_resume_config', 'checkpoint_manager',
    'compute_loss_terms', 'create_learning_rate_fn', 'create_networks', 'create_optimizer',
    'create_train_state', 'eval_step', 'init_rng', 'initialized', 'load_for_inference', 'main',
    'make_steps', 'maybe_initialize_distributed', 'num_train_steps', 'per_point_error',
    'preprocess', 'raster_settings', 'reg_weights', 'restore_latest', 'save_checkpoint',
    'state_to_host_dict', 'train_and_evaluate', 'train_step', 'verdict', 'write_config']

# Batches kept on the devices ahead of the step (the copy of the next overlaps the current step).
DEVICE_PREFETCH = 2

# ----------------------------------------------------------------------------- main loop

def create_writer(workdir):
  """TensorBoard + console on process 0; nothing on the others (only process 0 writes logs)."""
  if jax.process_index() == 0:
    return metric_writers.create_default_writer(workdir, asynchronous=False)
  return metric_writers.MultiWriter([])


def _log(msg, *args):
  if jax.process_index() == 0:
    text = msg % args if args else msg
    logging.info(text)
    print(text, flush=True)


def _every(step, every, total):
  return every > 0 and (step % every == 0 or step == total)


def train_and_evaluate(config, workdir, allow_config_change=False):
  """Trains `config` in `workdir` (resuming from its newest checkpoint) and returns the final state
  (host copy) and the last evaluation metrics.

  Nothing is written before the config is validated, the datasets and networks are built and a
  resumed workdir's config is checked (`allow_config_change` lets a resume change model, data or
  loss fields). Per step the host only enqueues work: metrics stay on the devices until the next
  log, summary, eval or checkpoint step, where they are fetched and the non-finite guard is checked.
  At a step that both saves and evaluates, the checkpoint is saved first.
  """
  maybe_initialize_distributed(config)
  workdir = os.path.abspath(workdir)
  validate.validate_config(config, jax.device_count())
  changed = check_resume_config(workdir, config, allow_config_change)
  parallel = DataParallel(config)

  builders = input_pipeline.prepare_datasets(config)
  steps_per_epoch = max(
      input_pipeline.split_size(builders, config.dataset.train_split) // config.batch_size, 1)
  eval_sets = input_pipeline.prepare_eval_datasets(config, builders)
  total_steps = num_train_steps(config, steps_per_epoch)
  p_train_step, p_eval_step, tx = make_steps(config, parallel, steps_per_epoch)
  network, decoder = create_networks(config, bn_axis_name=parallel.bn_axis_name)
  host_state = create_train_state(init_rng(config), config, network, decoder, tx)
  reg_weights(config)  # Checked here so that a bad config stops before the workdir is written.

  write_config(workdir, config)
  writer = create_writer(workdir)
  manager = checkpoint_manager(workdir, config)
  restored = restore_latest(manager, host_state)
  if restored is not None:
    host_state = restored
    _log('resumed from step %d (data position %d)%s', int(host_state.step),
         int(host_state.data_position),
         f'; config changes allowed: {", ".join(changed)}' if changed else '')
  else:  # Every process starts from process 0's parameters (not from its own initialisation).
    host_state = broadcast_from_process_0(host_state)
  start_step = int(host_state.step)
  train_iter = input_pipeline.create_iterator(config, builders, config.dataset.train_split,
                               position=int(host_state.data_position))
  state = parallel.put_state(host_state)
  del host_state

  hooks = []
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  if jax.process_index() == 0:
    hooks.append(report)
    if config.profile:
      hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=5))

  _log('training %d steps (%d per epoch, global batch %d, %s on %d devices), from step %d',
       total_steps, steps_per_epoch, config.batch_size, parallel.mode, jax.device_count(),
       start_step)
  batches = parallel.prefetch(train_iter, DEVICE_PREFETCH)
  on_device, train_metrics = [], []  # metrics not yet fetched / fetched since the last log
  t_start = t_log = time.time()
  step_log = start_step
  eval_metrics = {}
  for step in range(start_step + 1, total_steps + 1):
    host_batch, device_batch = next(batches)
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      state, metrics = p_train_step(state, device_batch)
    on_device.append(metrics)
    for h in hooks:
      h(step)
    log_now = _every(step, config.log_every_steps, total_steps)
    save_now = _every(step, config.checkpoint_every_steps, total_steps)
    image_now = _every(step, config.image_every_steps, total_steps)
    eval_now = _every(step, config.eval_every_steps, total_steps)
    if not (log_now or save_now or image_now or eval_now):
      continue

    # A host sync: fetch the metrics of the steps since the last one, then the guard.
    fetched = [parallel.get_metrics(m) for m in on_device]
    on_device = []
    train_metrics.extend(fetched)
    try:
      check_nonfinite(fetched, config.max_consecutive_nonfinite, step)
    except FloatingPointError:
      manager.wait_until_finished()
      raise

    if log_now:
      summary = {f'train/{k}': float(np.mean([m[k] for m in train_metrics]))
                 for k in train_metrics[0]}
      summary['train/nonfinite_total'] = float(train_metrics[-1]['nonfinite_total'])
      now = time.time()
      steps_per_sec = (step - step_log) / max(now - t_log, 1e-9)
      summary['train/steps_per_sec'] = steps_per_sec
      summary['train/images_per_sec'] = steps_per_sec * config.batch_size
      writer.write_scalars(step, summary)
      eta = (total_steps - step) / max(steps_per_sec, 1e-9)
      _log('step %d/%d  loss %.4f  land %.5f  photo %.4f  lmk-err %.2f%%  %.2f steps/s  '
           'elapsed %s  ETA %s', step, total_steps, summary['train/loss'],
           summary['train/loss_land'], summary['train/loss_photo'],
           100 * summary['train/landmark_error'], steps_per_sec, _hms(now - t_start), _hms(eta))
      train_metrics, t_log, step_log = [], now, step

    # Saved before the evaluation: a crash there keeps this step's checkpoint (issue 16 (c)).
    if save_now:
      save_checkpoint(manager, state_to_host_dict(parallel.get_state(state)), config,
                      force=step == total_steps)

    if image_now:
      train_eval.write_image_summaries(config, parallel, p_eval_step, state, host_batch, writer,
                                       step)

    if eval_now:
      evals = train_eval.run_evaluation(config, parallel, p_eval_step, state, eval_sets['eval'],
                                        'eval', step, writer, config.num_eval_batches)
      eval_metrics = next(iter(evals.values()))
  manager.wait_until_finished()
  manager.close()
  writer.flush()

  final_state = parallel.get_state(state)
  result = {'eval': eval_metrics, 'train_seconds': time.time() - t_start}
  if config.final_test:
    tests = train_eval.run_evaluation(config, parallel, p_eval_step, state, eval_sets['test'],
                                      'test', total_steps, writer, -1)
    label, test = next(iter(tests.items()))
    result['test'] = test
    result['test_datasets'] = tests
    # The report reads the training dataset's test split (one source: the default's synthetic faces).
    if config.get('report', False) and jax.process_index() == 0 and len(builders) == 1:
      network, decoder = create_networks(config)
      params, batch_stats = initialized(init_rng(config), config, network, decoder)
      for line in run_report.end_of_training(config, workdir, state_to_host_dict(final_state),
                                             {'params': params, 'batch_stats': batch_stats}, network,
                                             decoder, test, builders):
        _log(line)
    else:
      _log(verdict(config, test, label))
    if jax.process_index() == 0:
      with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
        json.dump({'step': int(final_state.step), **_jsonable(result)}, f, indent=2)
  writer.close()
  return final_state, result


def check_nonfinite(metrics, limit, step):
  """Raises FloatingPointError when a run of `limit` skipped (non-finite) updates in a row is seen
  in `metrics` (one step's metrics dict, or the list of the steps since the last check)."""
  metrics = [metrics] if isinstance(metrics, dict) else list(metrics)
  run = max((int(m['nonfinite_consecutive']) for m in metrics), default=0)
  if limit > 0 and run >= limit:
    raise FloatingPointError(
        f'stopping at step {step}: {run} consecutive updates with a non-finite loss or gradient '
        f'were skipped (limit config.max_consecutive_nonfinite={limit}); parameters were not '
        'updated by them and the newest checkpoint holds finite values')


def verdict(config, test, label=None):
  """The end-of-training line: NME and PSNR on the (first) test set against the configured targets."""
  nme_ok = test['nme'] <= config.target_nme
  psnr_ok = test['psnr'] >= config.target_psnr
  return (f'test split ({label or config.dataset.test_split}, {int(test["num_images"])} images): '
          f'NME {test["nme"]:.2f}% <= {config.target_nme}%: {"PASS" if nme_ok else "FAIL"}; '
          f'PSNR {test["psnr"]:.2f} dB >= {config.target_psnr} dB: '
          f'{"PASS" if psnr_ok else "FAIL"}; SSIM {test["ssim"]:.4f}')


def _hms(seconds):
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _jsonable(x):
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  return x


# ----------------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and config.json.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False,
    'Resume a workdir even when the model, data or loss fields of --config differ from the config '
    'its checkpoints were trained with (logging, eval and step-count fields may always change).')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (e.g. facernet_jax/configs/default.py).',
    lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  config = _CONFIG.value
  maybe_initialize_distributed(config)
  logging.info('JAX process %d / %d, local devices %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  train_and_evaluate(config, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
