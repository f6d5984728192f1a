"""Runners for exported files: NHWC face crops -> (B, 495) coefficients, without JAX.

Both read the JSON sidecar written next to the file (`<file>.json`) for the image size, input dtype
and batch, and check the images against it before running.
"""
import json
import os
import warnings

import numpy as np
import tensorflow as tf


def read_sidecar(path):
  """The sidecar dict of an exported file (`path + '.json'`); a clear error when it is missing."""
  side = os.fspath(path) + '.json'
  if not os.path.isfile(side):
    raise FileNotFoundError(f'{side} is missing: it is written next to the model by '
                            f'`python -m facernet_jax.deploy` (export the model again)')
  with open(side) as f:
    return json.load(f)


class _Runner:
  """Shared input checks and batching."""

  def __init__(self, path, info):
    self.path = os.fspath(path)
    self.info = info
    self.image_size = int(info['image_size'])
    self.input_dtype = np.dtype(info['input']['dtype'])
    self.batch = info['input']['shape'][0]  # None: dynamic

  def _check(self, images):
    images = np.asarray(images)
    s = self.image_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(f'{self.path} takes (B, {s}, {s}, 3) NHWC RGB images, got shape {images.shape}')
    if self.input_dtype == np.uint8 and images.dtype != np.uint8:
      raise ValueError(f'{self.path} takes uint8 images (0-255), got {images.dtype}')
    return images.astype(self.input_dtype, copy=False)

  def __call__(self, images):
    """(B, S, S, 3) images -> (B, 495) float32; a fixed-batch file runs B in chunks (last one padded)."""
    images = self._check(images)
    if self.batch is None or len(images) == self.batch:
      return self._run(images)
    out = []
    for start in range(0, len(images), self.batch):
      chunk = images[start:start + self.batch]
      n = len(chunk)
      if n < self.batch:
        chunk = np.concatenate([chunk, np.zeros((self.batch - n,) + chunk.shape[1:], chunk.dtype)])
      out.append(self._run(chunk)[:n])
    return np.concatenate(out) if out else np.zeros((0, 495), np.float32)


class OnnxRunner(_Runner):
  """ONNX Runtime session for an exported .onnx (CPU; `threads` 0 = ONNX Runtime's default)."""

  def __init__(self, path, threads=0, model_bytes=None, info=None):
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    super().__init__(path, info if info is not None else read_sidecar(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model_bytes if model_bytes is not None else self.path
    self.session = ort.InferenceSession(source, options, providers=['CPUExecutionProvider'])
    self.input_name = self.session.get_inputs()[0].name

  def _run(self, images):
    return self.session.run(None, {self.input_name: images})[0]


class TFLiteRunner(_Runner):
  """LiteRT interpreter (ai_edge_litert when installed, else tf.lite) for an exported .tflite."""

  def __init__(self, path, threads=1, model_bytes=None, info=None):
    super().__init__(path, info if info is not None else read_sidecar(path))
    try:
      from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    except ImportError:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Interpreter = tf.lite.Interpreter  # pylint: disable=invalid-name
    if model_bytes is None:
      with open(self.path, 'rb') as f:
        model_bytes = f.read()
    self.interpreter = Interpreter(model_content=model_bytes, num_threads=int(threads) or None)
    self.interpreter.allocate_tensors()
    self._in = self.interpreter.get_input_details()[0]['index']
    self._out = self.interpreter.get_output_details()[0]['index']

  def _run(self, images):
    self.interpreter.set_tensor(self._in, images)
    self.interpreter.invoke()
    return np.array(self.interpreter.get_tensor(self._out))
