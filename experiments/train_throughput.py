"""Training throughput (steps/s, images/s) of a config's train step on random batches.

  python experiments/train_throughput.py --config=facernet_jax/configs/paper.py \
      --config.face_model.source=synthetic --config.face_model.resolution=48 --batch_sizes=4,256

Times the real jitted / pmapped `train.train_step` (network + 3DMM layer + renderer + Eq 11 + Adam)
on random images and landmarks, so no dataset is needed; compile time is reported separately.
Intended for the paper config's model on a GPU (docs/training.md); works on any backend.
"""
import json
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from facernet_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', 'facernet_jax/configs/paper.py', 'Config file.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['4', '256'], 'Global batch sizes to time.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per repeat (after 2 warm-up steps).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats per batch size; the median is reported.')


def measure(config, batch_size, steps, repeats):
  """Returns dict(batch_size, compile_s, steps_per_sec, images_per_sec): medians over `repeats`."""
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  parallel = train.DataParallel(config)
  p_train, _, tx = train.make_steps(config, parallel, steps_per_epoch=1000)
  network, decoder = train.create_networks(config, bn_axis_name=parallel.bn_axis_name)
  state = parallel.put_state(train.create_train_state(train.init_rng(config), config, network,
                                                      decoder, tx))
  devices = len(parallel.local_devices)
  rng = np.random.default_rng(0)
  s = config.image_size
  batch = {
      'image': rng.uniform(0, 1, (devices, batch_size // devices, s, s, 3)).astype(np.float32),
      'landmarks': rng.uniform(0.3 * s, 0.7 * s,
                               (devices, batch_size // devices, 68, 2)).astype(np.float32)}
  batch = parallel.put_batch(batch)
  t0 = time.time()
  state, metrics = p_train(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.time() - t0
  state, metrics = p_train(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(repeats):
    t0 = time.time()
    for _ in range(steps):
      state, metrics = p_train(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.time() - t0)
  dt = float(np.median(times))
  return {'batch_size': batch_size, 'compile_s': round(compile_s, 1),
          'steps_per_sec': round(steps / dt, 3), 'images_per_sec': round(steps * batch_size / dt, 1),
          'device': str(jax.devices()[0].device_kind), 'devices': jax.device_count()}


def main(argv):
  del argv
  config = _CONFIG.value
  for b in _BATCH_SIZES.value:
    print(json.dumps(measure(config, int(b), _STEPS.value, _REPEATS.value)), flush=True)


if __name__ == '__main__':
  app.run(main)
