"""Where the compiled train step spends its time: a jax.profiler trace of a few steps, summed per op.

  python experiments/profile_train_step.py --config=facernet_jax/configs/paper.py \
      --config.face_model.source=synthetic --config.face_model.resolution=189 --batch_size=4

Runs `--warmup` steps on random batches (as experiments/train_throughput.py), then traces
`--steps` more with jax.profiler and reads the trace (the XSpace protobuf, parsed with the copy
of its schema that tensorflow ships) back: per XLA op (fusion, dot, scatter, ...) the wall time per
step and how often it ran per step, summed over XLA:CPU's worker threads. An op that runs thousands of
times per step is inside a while loop (the rasteriser's chunked selection, for one); the trace itself
is left in `--trace_dir` for TensorBoard's profile plugin. Also prints the untraced step times, so a
step that gets dearer from step to step (a mesh that drifts) shows, and, with trainable bases, how
far FC_shape / FC_texture moved from their PCA start (median |change| / median |entry|).
"""
import collections
import glob
import json
import os
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
# The XSpace schema (tensorflow is already a dependency of clu and tfds).
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from facernet_jax.training import parallel as parallel_lib
from facernet_jax.training import state as state_lib
from facernet_jax.training import step as step_lib
from facernet_jax.training import validate as validate_lib

_CONFIG = config_flags.DEFINE_config_file('config', 'facernet_jax/configs/paper.py', 'Config file.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Batch size (one device).')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untraced, timed steps after the compile.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Traced steps.')
_TOP = flags.DEFINE_integer('top', 25, 'Ops to print.')
_TRACE_DIR = flags.DEFINE_string('trace_dir', '/tmp/facernet_jax_profile', 'Where the trace goes.')


def op_times(trace_dir, steps):
  """{op name: (ms per step, calls per step)} over the XLA:CPU threads of the newest trace."""
  path = max(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True),
             key=os.path.getmtime)
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  total, calls = collections.Counter(), collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith('tf_XLAEigen'):  # XLA:CPU's intra-op worker threads
        continue
      for event in line.events:
        name = names.get(event.metadata_id, '?')
        total[name] += event.duration_ps
        calls[name] += 1
  return {n: (t / 1e9 / steps, calls[n] / steps) for n, t in total.most_common()}


def main(argv):
  del argv
  config = _CONFIG.value.copy_and_resolve_references()
  config.batch_size = _BATCH.value
  validate_lib.validate_config(config, device_count=1)  # names a bad field, e.g. batch_size=0
  parallel = parallel_lib.DataParallel(config, devices=jax.devices()[:1], mode='jit')
  p_train, _, tx = step_lib.make_steps(config, parallel, steps_per_epoch=1000)
  network, decoder = state_lib.create_networks(config)
  initial = jax.device_get(state_lib.create_train_state(state_lib.init_rng(config), config,
                                                        network, decoder, tx))
  state = parallel.put_state(initial)
  rng = np.random.default_rng(0)
  s = config.image_size
  host = {'image': rng.integers(0, 256, (1, _BATCH.value, s, s, 3), dtype=np.uint8),
          'landmarks': rng.uniform(0.3 * s, 0.7 * s, (1, _BATCH.value, 68, 2)).astype(np.float32)}
  t0 = time.perf_counter()
  state, metrics = p_train(state, parallel.put_batch(host))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  step_s = []
  for _ in range(_WARMUP.value):
    t0 = time.perf_counter()
    state, metrics = p_train(state, parallel.put_batch(host))
    jax.block_until_ready(metrics)
    step_s.append(round(time.perf_counter() - t0, 4))
  print(json.dumps({'compile_s': round(compile_s, 1), 'step_s': step_s}), flush=True)
  jax.profiler.start_trace(_TRACE_DIR.value)
  for _ in range(_STEPS.value):
    state, metrics = p_train(state, parallel.put_batch(host))
  jax.block_until_ready(metrics)
  jax.profiler.stop_trace()
  start = initial.params['decoder'].get('morphable_model', {})
  end = parallel.get_state(state).params['decoder'].get('morphable_model', {})
  print(json.dumps({name: {'median_abs_entry': float(np.median(np.abs(start[name]))),
                           'median_change_over_median_entry': float(
                               np.median(np.abs(end[name] - start[name]))
                               / np.median(np.abs(start[name])))}
                    for name in sorted(start)}), flush=True)
  for name, (ms, calls) in list(op_times(_TRACE_DIR.value, _STEPS.value).items())[:_TOP.value]:
    print(json.dumps({'op': name[:120], 'ms_per_step': round(ms, 2),
                      'calls_per_step': round(calls, 1)}), flush=True)


if __name__ == '__main__':
  app.run(main)
