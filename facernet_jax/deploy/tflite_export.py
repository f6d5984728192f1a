"""LiteRT (TFLite) export: jax2tf, then the TFLite converter of the pinned TensorFlow, built-in ops only.

The converter folds BatchNorm into the convs, fuses ReLU6 into them and maps the grouped convs to
DEPTHWISE_CONV_2D; the batch is fixed (default 1: a phone runs one face at a time; LiteRT can resize
the input at run time, but a fixed size lets the converter plan all buffers).
"""
from jax.experimental import jax2tf
import tensorflow as tf

from facernet_jax.deploy import graph
from facernet_jax.deploy.onnx_export import check_image_size
from facernet_jax.deploy.onnx_export import write_atomic


def export_tflite(config, variables, path=None, image_size=None, batch=1, input_dtype='float32'):
  """Exports the eval-mode network to a .tflite flatbuffer. Returns (bytes, sidecar dict)."""
  image_size = check_image_size(config, image_size)
  if batch is None or int(batch) < 1:
    raise ValueError(f'TFLite export needs a fixed batch size >= 1, got {batch}')
  fn = graph.network_for_export(config, graph.network_variables(variables), input_dtype)
  spec = tf.TensorSpec((int(batch), image_size, image_size, 3), getattr(tf, input_dtype), name='images')
  tf_fn = tf.function(jax2tf.convert(fn, with_gradient=False), autograph=False, input_signature=[spec])
  converter = tf.lite.TFLiteConverter.from_concrete_functions([tf_fn.get_concrete_function()], tf_fn)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex / custom ops
  data = converter.convert()
  info = graph.sidecar(config, 'tflite', image_size, int(batch), input_dtype,
                       {'exporter': f'jax2tf + TFLiteConverter (tensorflow {tf.__version__})'})
  if path is not None:
    write_atomic(path, data, info)
  return data, info
