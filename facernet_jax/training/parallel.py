"""Device placement: 'pmap' or 'jit' + NamedSharding data parallelism, batch prefetch, multi-host.

Batches arrive from the input pipeline as numpy arrays shaped (local_devices, per_device_batch, ...).
The state is replicated (every device holds all parameters); the batch is split over the devices.
"""
import collections
import functools
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

AXIS = 'batch'
MODES = ('pmap', 'jit')


class DataParallel:
  """Places state and batches for 'pmap' or 'jit' (NamedSharding) data parallelism and compiles steps."""

  def __init__(self, config, devices=None, mode=None):
    self.mode = mode or config.parallel
    if self.mode not in MODES:
      raise ValueError(f"config.parallel must be 'pmap' or 'jit', got {self.mode!r}")
    # All participating devices, of every process: pmap's `devices` must list them all. Given only
    # this process's devices, each process runs its own pmap and the gradient mean never crosses
    # processes (the replicas on different hosts then train on different gradients).
    self.devices = list(devices) if devices is not None else jax.devices()
    local = set(jax.local_devices())
    self.local_devices = [d for d in self.devices if d in local]
    # pmap lays its (local devices, ...) outputs out on this mesh; inputs placed the same way are
    # used in place (any other layout makes the second step recompile or copy).
    self.local_sharding = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))
    if self.mode == 'jit':
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
      self.replicated = NamedSharding(self.mesh, P())
      self.sharded = NamedSharding(self.mesh, P(AXIS))

  @property
  def bn_axis_name(self):
    return AXIS if self.mode == 'pmap' else None

  @property
  def axis_name(self):
    return AXIS if self.mode == 'pmap' else None

  def put_state(self, state):
    """Replicates the (host) state on every device.

    For pmap each device gets one copy of each leaf, assembled into a (local devices, ...) array
    laid out as pmap lays out its outputs (no per-leaf-shape compile as in
    flax.jax_utils.replicate, and no stacked host copy: at BFM size a state is ~0.5 GB).
    """
    state = jax.device_get(state)
    if self.mode == 'pmap':
      n = len(self.local_devices)

      def replicate(x):
        x = np.asarray(x)
        shards = [jax.device_put(x[None], d) for d in self.local_devices]
        return jax.make_array_from_single_device_arrays((n,) + x.shape, self.local_sharding,
                                                        shards)
      return jax.tree_util.tree_map(replicate, state)
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    """One host (numpy) copy of the replicated state (a host sync)."""
    first = lambda x: np.asarray(jax.device_get(x.addressable_data(0)))
    if self.mode == 'pmap':  # Each device holds a (1, ...) slice of the (devices, ...) array.
      return jax.tree_util.tree_map(lambda x: first(x)[0], state)
    return jax.tree_util.tree_map(first, state)

  def put_batch(self, batch):
    """A host batch (local_devices, per_device, ...) -> device arrays split over the devices."""
    if self.mode == 'pmap':
      return jax.tree_util.tree_map(
          lambda x: jax.device_put(np.asarray(x), self.local_sharding), batch)
    def put(x):
      x = np.asarray(x)
      x = x.reshape((-1,) + x.shape[2:])
      return jax.make_array_from_process_local_data(self.sharded, x)
    return jax.tree_util.tree_map(put, batch)

  def prefetch(self, iterator, size=2):
    """Yields `(host batch, device batch)`, keeping `size` batches already on the devices, so that
    the host-to-device copy of the next batch overlaps the current step (as
    flax.jax_utils.prefetch_to_device, for both modes)."""
    queue = collections.deque()
    def enqueue(n):
      for _ in range(n):
        try:
          batch = next(iterator)
        except StopIteration:
          return
        queue.append((batch, self.put_batch(batch)))
    enqueue(max(int(size), 1))
    while queue:
      yield queue.popleft()
      enqueue(1)

  def get_output(self, out):
    """Per-example outputs of this process as numpy (n_local, ...)."""
    if self.mode == 'pmap':
      return jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), out)
    def local(x):
      shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
      return np.concatenate([np.asarray(s.data) for s in shards])
    return jax.tree_util.tree_map(local, out)

  def get_metrics(self, metrics):
    """One host copy of the step's metrics (replicated like the state)."""
    return self.get_state(metrics)

  def compile_train_step(self, step_fn):
    """The compiled step; the state argument is donated (updated in place, not copied)."""
    if self.mode == 'pmap':
      return jax.pmap(functools.partial(step_fn, axis_name=AXIS), axis_name=AXIS,
                      devices=self.devices, donate_argnums=(0,))
    return jax.jit(functools.partial(step_fn, axis_name=None), donate_argnums=(0,),
                   in_shardings=(self.replicated, self.sharded),
                   out_shardings=(self.replicated, self.replicated))

  def compile_eval_step(self, eval_fn):
    if self.mode == 'pmap':
      return jax.pmap(eval_fn, axis_name=AXIS, devices=self.devices)
    return jax.jit(eval_fn, in_shardings=(self.replicated, self.replicated, self.sharded),
                   out_shardings=self.sharded)

  def eval_args(self, state):
    return state.params, state.batch_stats


def broadcast_from_process_0(tree):
  """Process 0's copy of a host pytree on every process: replicas never rely on each host building
  bit-identical initial parameters (a different BLAS, XLA version or CPU could change them)."""
  if jax.process_count() == 1:
    return tree
  return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def maybe_initialize_distributed(config=None):
  """jax.distributed.initialize() when config.distributed.initialize or FACERNET_DISTRIBUTED=1.

  Explicit coordinator / process count / id come from the config, else from JAX's cluster
  auto-detection (SLURM, Open MPI, Cloud TPU, ...). On CPU, cross-process collectives use gloo.
  """
  dist = config.distributed if config is not None else None
  wanted = os.environ.get('FACERNET_DISTRIBUTED', '') == '1' or (dist is not None and dist.initialize)
  if not wanted:
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if dist is not None:
    if dist.coordinator_address:
      kwargs['coordinator_address'] = dist.coordinator_address
    if dist.num_processes > 0:
      kwargs['num_processes'] = int(dist.num_processes)
    if dist.process_id >= 0:
      kwargs['process_id'] = int(dist.process_id)
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except Exception:  # pylint: disable=broad-except
    pass
  jax.distributed.initialize(**kwargs)
  logging.info('distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True
