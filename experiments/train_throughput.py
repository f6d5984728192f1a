"""Training throughput and a breakdown of the train step, on random batches (no dataset needed).

  # paper config with a synthetic model of BFM size (35,721 vertices) when no converted BFM is at hand
  python experiments/train_throughput.py --config=facernet_jax/configs/paper.py \
      --config.face_model.source=synthetic --config.face_model.resolution=189 \
      --batch_sizes=4 --breakdown
  # data-parallel scaling: the global batch grows with the simulated devices (4 per device)
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/train_throughput.py \
      --config=facernet_jax/configs/default.py --devices=1,2,4,8 --batch_per_device=4

Times the real compiled `train_step` (network + 3DMM layer + renderer + Eq 11 + Adam, as the
training loop runs it: donated state, batches put on the devices ahead of the step) and reports
steps/s, images/s, compile time, the peak RSS of the whole process (compile included) and of the
timed steps alone (Linux), and XLA's memory estimate of the step; medians over repeats. Every
repeat starts from the initial state: the hard rasteriser's cost grows with the triangles' pixel
boxes, so a mesh that drifted on the random batches would make later repeats dearer.
`--breakdown` also times the parts of one step separately on one device: network forward and
forward + backward, the 3DMM layer and geometry (camera, normals, shading), the renderer forward and
forward + backward, Eq 11's terms with their gradient, the optimiser update, and the host transfers
(batch in, metrics out, the state copy a checkpoint needs). The parts overlap inside the fused step,
so they do not add up exactly. Imports only facernet_jax.training (not the train CLI and its flags).
"""
import json
import os
import resource
import time
import types

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from facernet_jax import losses
from facernet_jax import forward
from facernet_jax import render as render_lib
from facernet_jax.render import mesh as mesh_lib
from facernet_jax.training import parallel as parallel_lib
from facernet_jax.training import state as state_lib
from facernet_jax.training import step as step_lib
from facernet_jax.training import validate as validate_lib

_CONFIG = config_flags.DEFINE_config_file('config', 'facernet_jax/configs/paper.py', 'Config file.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['4', '256'], 'Global batch sizes to time.')
_DEVICES = flags.DEFINE_list('devices', [], 'Device counts to time (first n of jax.devices()); '
                             'default: all devices.')
_BATCH_PER_DEVICE = flags.DEFINE_integer(
    'batch_per_device', 0, '> 0: the global batch is this times the device count (overrides '
    '--batch_sizes), i.e. weak scaling.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per repeat (after 2 warm-up steps).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats; the median is reported.')
_BREAKDOWN = flags.DEFINE_bool('breakdown', False, 'Also time the parts of the step.')
_BREAKDOWN_ONLY = flags.DEFINE_bool('breakdown_only', False, 'Only the breakdown (no scaling).')


def random_batch(config, batch_size, devices, seed=0):
  """A host batch (devices, batch_size / devices, ...) as the input pipeline yields it."""
  rng = np.random.default_rng(seed)
  s, per = config.image_size, batch_size // devices
  return {'image': rng.integers(0, 256, (devices, per, s, s, 3), dtype=np.uint8),
          'landmarks': rng.uniform(0.3 * s, 0.7 * s, (devices, per, 68, 2)).astype(np.float32)}


_PEAK_BEFORE_RESET = [0.0]  # the process's peak before the last _reset_peak_rss (GiB)


def _peak_rss_gib():
  """Peak RSS of the whole process so far (compiles included), across peak resets."""
  return max(_PEAK_BEFORE_RESET[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def _reset_peak_rss():
  """Linux: restarts the kernel's peak-RSS count (VmHWM), so that `_peak_rss_since_reset_gib`
  covers only what runs after it (the steps, not the compile). False where unsupported."""
  _PEAK_BEFORE_RESET[0] = _peak_rss_gib()
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _peak_rss_since_reset_gib():
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 2**20
  return None


def _median_seconds(fn, repeats, steps, cpu=None):
  """Median wall seconds per call; `cpu` (a list) gets the median CPU seconds of this process per
  call (all threads): on a machine shared with other jobs the CPU time is the steadier number."""
  times, cpu_times = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      out = fn()
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / steps)
    cpu_times.append((time.process_time() - c0) / steps)
  if cpu is not None:
    cpu.append(float(np.median(cpu_times)))
  return float(np.median(times))


def measure(config, batch_size, steps, repeats, devices=None):
  """dict(batch_size, devices, compile_s, steps_per_sec, images_per_sec, step_total_gib, ...)."""
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  validate_lib.validate_config(config)  # names a bad field, e.g. a batch size of 0
  parallel = parallel_lib.DataParallel(config, devices=devices)
  n = len(parallel.devices)
  if batch_size % n:
    raise ValueError(f'batch {batch_size} is not divisible by {n} devices')
  p_train, _, tx = step_lib.make_steps(config, parallel, steps_per_epoch=1000)
  network, decoder = state_lib.create_networks(config, bn_axis_name=parallel.bn_axis_name)
  # A host copy: every put is a fresh device copy, which the donated step may consume.
  initial = jax.device_get(state_lib.create_train_state(state_lib.init_rng(config), config,
                                                        network, decoder, tx))
  state = parallel.put_state(initial)
  host_batches = [random_batch(config, batch_size, n, seed) for seed in range(2)]
  t0 = time.perf_counter()
  state, metrics = p_train(state, parallel.put_batch(host_batches[0]))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  memory = None
  if parallel.mode == 'jit':  # XLA's own account of the step's buffers (pmap has none to give)
    try:
      m = p_train.lower(state, parallel.put_batch(host_batches[0])).compile().memory_analysis()
      memory = {'step_arguments_gib': m.argument_size_in_bytes / 2**30,
                'step_temp_gib': m.temp_size_in_bytes / 2**30,
                # What the step holds at once: inputs, outputs not written in place, temporaries.
                'step_total_gib': (m.argument_size_in_bytes + m.output_size_in_bytes
                                   - m.alias_size_in_bytes + m.temp_size_in_bytes) / 2**30}
    except Exception:  # pylint: disable=broad-except
      memory = None
  del state

  def run_steps():  # as the loop: device prefetch, donated state, no host sync per step
    # Every repeat starts from the initial state (put outside the timing): the hard rasteriser's
    # cost grows with the triangles' pixel boxes, so a mesh that drifts over the repeats (random
    # batches; Adam on the bases) would make later repeats slower than the first.
    st = jax.block_until_ready(parallel.put_state(initial))
    batches = parallel.prefetch(iter(host_batches * ((steps + 1) // 2 + 1)), 2)
    t0, c0 = time.perf_counter(), time.process_time()
    m = None
    for _ in range(steps):
      _, device_batch = next(batches)
      st, m = p_train(st, device_batch)
    jax.block_until_ready(m)
    return time.perf_counter() - t0, time.process_time() - c0

  run_steps()
  peak_reset = _reset_peak_rss()
  wall, cpu = zip(*[run_steps() for _ in range(repeats)])
  steps_peak = _peak_rss_since_reset_gib() if peak_reset else None
  dt = float(np.median(wall)) / steps
  out = {'batch_size': batch_size, 'devices': n, 'mode': parallel.mode,
         'compile_s': round(compile_s, 1), 's_per_step': round(dt, 4),
         'cpu_s_per_step': round(float(np.median(cpu)) / steps, 4),
         'steps_per_sec': round(1 / dt, 3), 'images_per_sec': round(batch_size / dt, 1),
         'peak_rss_gib': round(_peak_rss_gib(), 2),
         'device': str(jax.devices()[0].device_kind)}
  if steps_peak is not None:  # while the timed steps ran; starts at what the compile left resident
    out['steps_peak_rss_gib'] = round(steps_peak, 2)
  out.update({k: round(v, 3) for k, v in (memory or {}).items()})
  return out


def breakdown(config, batch_size, steps, repeats):
  """{part: ms per call} for the parts of one train step on one device (see the module doc)."""
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  validate_lib.validate_config(config)  # names a bad field, e.g. a batch size of 0
  network, decoder = state_lib.create_networks(config)
  face_model = state_lib.build_face_model(config)
  tx = state_lib.create_optimizer(config, 1000)
  st = state_lib.create_train_state(state_lib.init_rng(config), config, network, decoder, tx)
  geometry = forward.FaceDecoder(face_model=face_model, image_size=config.image_size,
                                 trainable_bases=config.trainable_bases, raster=None)
  raster = state_lib.raster_settings(config)
  triangles = jnp.asarray(face_model.triangles)
  neighbours = jnp.asarray(mesh_lib.vertex_neighbours(face_model.triangles,
                                                      face_model.num_vertices))
  host = random_batch(config, batch_size, 1)
  batch = step_lib.preprocess({k: jnp.asarray(v[0]) for k, v in host.items()})
  images = batch['image']
  params, bstats = st.params, st.batch_stats
  rows = {}

  def timed(name, fn, *args):
    f = jax.jit(fn)
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    compile_s = time.perf_counter() - t0
    cpu = []
    rows[name] = {'ms': round(1e3 * _median_seconds(lambda: f(*args), repeats, steps, cpu), 2),
                  'cpu_ms': round(1e3 * cpu[0], 2), 'compile_s': round(compile_s, 1)}
    print(json.dumps({'part': name, **rows[name]}), flush=True)

  def net(p):
    variables = {'params': p, 'batch_stats': bstats} if bstats else {'params': p}
    out, _ = network.apply(variables, images, train=True, mutable=['batch_stats'])
    return out

  timed('network forward', net, params['network'])
  timed('network forward+backward',
        lambda p: jax.vjp(net, p)[1](jnp.ones((batch_size, 495), jnp.float32)), params['network'])
  coefficients = net(params['network'])
  geo = lambda p, c: geometry.apply({'params': p}, c)
  timed('3DMM layer + geometry forward', geo, params['decoder'], coefficients)

  def geo_grad(p, c):
    out, vjp = jax.vjp(geo, p, c)
    return vjp(jax.tree_util.tree_map(jnp.ones_like, out))
  timed('3DMM layer + geometry forward+backward', geo_grad, params['decoder'], coefficients)
  decoded = geo(params['decoder'], coefficients)
  screen, colours = decoded['screen'], decoded['colours']
  rend = lambda s, c: render_lib.render_mesh(s, triangles, c, raster)
  timed('renderer forward', lambda s, c: rend(s, c).image, screen, colours)
  weight = jax.random.uniform(jax.random.key(1), (batch_size, config.image_size,
                                                  config.image_size, 3))
  timed('renderer forward+backward',
        jax.grad(lambda s, c: jnp.sum(rend(s, c).image * weight), argnums=(0, 1)), screen, colours)
  render_out = rend(screen, colours)
  weights = losses.LossWeights.from_config(config.loss_weights)
  error_weights = losses.landmark_error_weights(st.landmark_error)

  def loss_of(image, alpha, landmarks, vertices, c):
    d = {'render': types.SimpleNamespace(image=image, alpha=alpha), 'landmarks': landmarks,
         'vertices': vertices}
    terms = step_lib.compute_loss_terms(batch, c, d, error_weights, config=config,
                                        neighbours=neighbours)
    return losses.total_loss(terms, weights, epoch=10,
                             land_error_start_epoch=config.land_error_start_epoch)[0]
  timed('losses (Eq 11) forward+backward', jax.grad(loss_of, argnums=(0, 2, 3, 4)),
        render_out.image, render_out.alpha, decoded['landmarks'], decoded['vertices'],
        coefficients)
  grads = jax.tree_util.tree_map(lambda x: jnp.full_like(x, 1e-3), params)

  def opt(g, s, p):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s
  timed('optimiser (Adam update of all parameters)', opt, grads, st.opt_state, params)
  n_net = sum(x.size for x in jax.tree_util.tree_leaves(params['network']))
  n_dec = sum(x.size for x in jax.tree_util.tree_leaves(params['decoder']))

  parallel = parallel_lib.DataParallel(config, devices=jax.devices()[:1], mode='jit')
  p_train, _, _ = step_lib.make_steps(config, parallel, steps_per_epoch=1000)
  initial = jax.device_get(st)  # host copy, put afresh for each (donating) run
  state, metrics = p_train(parallel.put_state(initial), parallel.put_batch(host))
  jax.block_until_ready(metrics)
  box = {'state': state}

  def full():  # from the initial state each repeat, as measure() (the mesh must not drift)
    s = jax.block_until_ready(parallel.put_state(initial))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      s, m = p_train(s, parallel.put_batch(host))
    jax.block_until_ready(m)
    box['state'] = s
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
  wall, cpu = zip(*[full() for _ in range(repeats)])
  rows['full train step'] = {'ms': round(1e3 * float(np.median(wall)), 2),
                             'cpu_ms': round(1e3 * float(np.median(cpu)), 2)}
  print(json.dumps({'part': 'full train step', **rows['full train step']}), flush=True)
  rows['host: batch to device'] = {'ms': round(1e3 * _median_seconds(
      lambda: parallel.put_batch(host), repeats, steps), 3)}
  rows['host: fetch metrics (one sync)'] = {'ms': round(1e3 * _median_seconds(
      lambda: parallel.get_metrics(metrics), repeats, steps), 3)}
  rows['host: state copy for a checkpoint'] = {'ms': round(1e3 * _median_seconds(
      lambda: parallel.get_state(box['state']), 1, 2), 1)}
  for k in list(rows)[-3:]:
    print(json.dumps({'part': k, **rows[k]}), flush=True)
  print(json.dumps({'params_network_M': round(n_net / 1e6, 2),
                    'params_decoder_M': round(n_dec / 1e6, 2),
                    'vertices': int(face_model.num_vertices)}), flush=True)
  return rows


def main(argv):
  del argv
  config = _CONFIG.value
  counts = [int(d) for d in _DEVICES.value] or [jax.device_count()]
  print(json.dumps({'load_average': [round(x, 2) for x in os.getloadavg()],
                    'devices_available': jax.device_count()}), flush=True)
  for n in ([] if _BREAKDOWN_ONLY.value else counts):
    sizes = [_BATCH_PER_DEVICE.value * n] if _BATCH_PER_DEVICE.value > 0 else [
        int(b) for b in _BATCH_SIZES.value]
    for b in sizes:
      print(json.dumps(measure(config, b, _STEPS.value, _REPEATS.value,
                               devices=jax.devices()[:n])), flush=True)
  if _BREAKDOWN.value or _BREAKDOWN_ONLY.value:
    breakdown(config, int(_BATCH_SIZES.value[0]), _STEPS.value, _REPEATS.value)
  print(json.dumps({'peak_rss_gib': round(_peak_rss_gib(), 2)}), flush=True)


if __name__ == '__main__':
  app.run(main)
