"""Inference API: load a trained model and run it on batches of face crops (used by reconstruct and evaluate).

`load_model(path)` reads a training workdir or checkpoint directory into a `Reconstructor`, whose jitted
functions work on fixed-size batches (`pad_batch` pads the last one, so each function compiles once):
`regress` (crops -> Eq 10 coefficients; with backend='onnx' the network runs in ONNX Runtime instead,
facernet_jax.deploy), `decode` (coefficients -> geometry, landmarks and a hard render
at `render_size`) and `refine` (a few optimiser steps on the coefficients, facernet_jax.refine).
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from facernet_jax import deploy
from facernet_jax import export
from facernet_jax import forward
from facernet_jax import refine as refine_lib
from facernet_jax import train
from facernet_jax.render import RasterSettings


class ModelError(Exception):
  """The model cannot be loaded; nothing can be done."""


def pad_batch(x, batch_size):
  """Pads `x` (n <= batch_size rows) with zero rows to `batch_size`. Returns (padded array, n)."""
  x = np.asarray(x)
  n = len(x)
  if n > batch_size:
    raise ValueError(f'{n} rows do not fit a batch of {batch_size}')
  if n == batch_size:
    return x, n
  pad = np.zeros((batch_size - n,) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad], 0), n


class Reconstructor:
  """Jitted, batched regression (+ optional refinement) and rendering for one trained model."""

  def __init__(self, config, variables, batch_size=8, render_size=None, backend='jax', onnx_path=None):
    self.config = config
    self.image_size = int(config.image_size)
    self.batch_size = int(batch_size)
    self.render_size = int(render_size or config.image_size)  # None: the model's input size
    self.variables = variables
    self.network, self.decoder = train.create_networks(config)
    self.face_model = self.decoder.face_model
    self.params = jax.tree_util.tree_map(jnp.asarray, variables['params'])
    self.batch_stats = jax.tree_util.tree_map(jnp.asarray, variables.get('batch_stats', {}) or {})
    raster = dict(config.raster.to_dict()) if 'raster' in config else {}
    raster.update(image_size=self.render_size, mode='hard')
    self.uvs = export.model_uvs(self.face_model)
    network = self.network

    def predict(params, batch_stats, images):
      variables = {'params': params['network']}
      if batch_stats:
        variables['batch_stats'] = batch_stats
      return network.apply(variables, images, train=False)

    self._predict = jax.jit(predict)
    self.backend = backend
    self.runner = self._onnx_runner(onnx_path) if backend == 'onnx' else None
    if backend not in ('jax', 'onnx'):
      raise ValueError(f"backend must be 'jax' or 'onnx', got {backend!r}")
    self._decode = self._build_decode(RasterSettings(**raster))
    self._refine_fns = {}

  def _build_decode(self, raster):
    """Jitted coefficients -> geometry + hard render at render_size (the camera scales with the image
    size, so the same coefficients render the same view, sharper)."""
    hires = forward.FaceDecoder(face_model=self.face_model, image_size=self.render_size,
                                trainable_bases=bool(self.config.get('trainable_bases', True)),
                                raster=raster)
    scale = self.image_size / self.render_size

    def decode(params, coefficients):
      out = hires.apply({'params': params['decoder']}, coefficients)
      r = out['render']
      keep = ('vertices', 'vertices_cam', 'landmarks', 'albedo', 'colours', 'rotation')
      res = {k: out[k] for k in keep}
      res['landmarks_crop'] = out['landmarks'] * scale  # crop pixels (exact: the camera scales)
      res.update(render=r.image, alpha=r.alpha, depth=r.depth, overflow=r.overflow)
      return res

    return jax.jit(decode)

  def _onnx_runner(self, onnx_path):
    """ONNX Runtime session for the network: the exported file `onnx_path` (its sidecar must name
    this model's config), or, without one, the network exported in memory now (docs/deploy.md)."""
    try:
      if onnx_path is None:
        model, info = deploy.export_onnx(self.config, self.variables)
        return deploy.OnnxRunner('<exported in memory>', model_bytes=model.SerializeToString(), info=info)
      runner = deploy.OnnxRunner(onnx_path)
    except (ImportError, FileNotFoundError) as e:
      raise ModelError(f'--backend onnx: {e}') from None
    if runner.input_dtype != np.float32:
      raise ModelError(f'{onnx_path} takes {runner.input_dtype} images; reconstruct feeds float32 crops in [0, 1]: '
                       f'export with --input-dtype=float32')
    mine = json.loads(self.config.model.to_json(sort_keys=True))
    if runner.image_size != self.image_size or runner.info.get('config', {}).get('model') != mine:
      raise ModelError(f'{onnx_path} was exported from another model ({runner.info.get("model")}, '
                       f'{runner.image_size} px) than the checkpoint ({self.config.model.name}, '
                       f'{self.image_size} px); export this checkpoint with python -m facernet_jax.deploy')
    return runner

  def pad(self, x):
    """`pad_batch` to this model's batch size."""
    return pad_batch(x, self.batch_size)

  def regress(self, crops):
    """(B, S, S, 3) float crops -> (B, 495) coefficients (batch padded to batch_size: one compile)."""
    if self.runner is not None:
      return self.runner(np.asarray(crops, np.float32))
    images, n = self.pad(crops)
    return np.asarray(self._predict(self.params, self.batch_stats, images))[:n]

  def decode(self, coefficients):
    """Geometry, landmarks (crop pixels) and the hard render at render_size, as numpy."""
    c, n = self.pad(coefficients)
    out = {k: np.asarray(v)[:n] for k, v in self._decode(self.params, c).items()}
    if np.any(out['overflow'] > 0):
      print(f'warning: the rasteriser dropped triangles for {int(np.sum(out["overflow"] > 0))} face(s); '
            f'renders and depth maps may have holes (lower --render-size)', file=sys.stderr)
    return out

  def refine(self, coefficients, crops, targets, has_targets, steps, learning_rate=0.01):
    """N Adam steps on the coefficients against Eqs 12, 14, 15, 17 (facernet_jax.refine). Returns
    (coefficients, losses before, losses after), losses being one dict per face:
    {'total', 'land', 'photo', 'ssim', 'reg'}."""
    key = (int(steps), float(learning_rate))
    if key not in self._refine_fns:
      self._refine_fns[key] = refine_lib.build_refine_fn(self.decoder, self.config, *key)
    n = len(coefficients)
    c, _ = self.pad(np.asarray(coefficients, np.float32))
    images, _ = self.pad(np.asarray(crops, np.float32))
    tg, _ = self.pad(np.asarray(targets, np.float32))
    ht, _ = self.pad(np.asarray(has_targets, np.float32))
    valid = (np.arange(self.batch_size) < n).astype(np.float32)
    c2, before, after = self._refine_fns[key](self.params, c, images, tg, ht, valid)
    return np.asarray(c2)[:n], refine_lib.per_face_losses(before, n), refine_lib.per_face_losses(after, n)


_MODEL_CACHE = {}


def _checkpoint_signature(path):
  """Changes when a checkpoint is added or rewritten (keys the in-process model cache)."""
  sig = []
  for root in (path, os.path.join(path, 'checkpoints')):
    if os.path.isdir(root):
      sig += sorted((n, os.stat(os.path.join(root, n)).st_mtime_ns) for n in os.listdir(root))
  return tuple(sig)


def load_model(path, batch_size=8, render_size=256, backend='jax', onnx_path=None):
  """Reconstructor for a workdir or checkpoint directory; ModelError with a clear message if missing.

  backend 'onnx': the network runs in ONNX Runtime (`onnx_path`, an exported file, or exported now).

  Cached per process (path, checkpoint files, batch size, render size), so repeated calls in a
  notebook or a test session reuse the compiled functions.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ModelError(f'checkpoint or workdir {path!r} does not exist; train a model first '
                     f'(python -m facernet_jax.train --config=... --workdir=DIR) and pass --workdir=DIR')
  key = (os.path.realpath(path), _checkpoint_signature(path), int(batch_size), render_size, backend,
         onnx_path)
  if key in _MODEL_CACHE:
    return _MODEL_CACHE[key]
  try:
    config, variables = train.load_for_inference(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelError(f'cannot load a trained model from {path!r}: {e}') from None
  _MODEL_CACHE.clear()
  _MODEL_CACHE[key] = Reconstructor(config, variables, batch_size, render_size, backend, onnx_path)
  return _MODEL_CACHE[key]
