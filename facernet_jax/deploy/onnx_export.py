"""ONNX export with jax2onnx, then graph clean-up so that ONNX Runtime loads and runs it well.

Fixes the measured pitfalls of a plain jax2onnx export (docs/deploy.md):
- jax2onnx stamps every intermediate with its JAX (NHWC) shape, but its convs run in NCHW, so these
  `value_info` annotations are stale and ONNX Runtime refuses the file (at the attention's
  (1 + M) * F multiply). They are dropped and ONNX shape inference recomputes them.
- BatchNorm exports as BatchNormalization and each NHWC conv as Transpose-Conv-Transpose.
  ONNX Runtime's basic (standard-ops-only, provider-independent) optimisation level folds each
  BatchNormalization into its Conv's weights and bias, folds constants and cancels the transposes;
  the file written is that optimised graph, so every runtime gets the folded network.
- opset >= 18 (lower opsets give invalid models); ReLU6 is one Clip (models.layers.relu6); the
  decoder's upsample is a constant-index Gather, so the batch dimension stays free.
"""
from importlib import metadata
import json
import logging
import os
import tempfile

import jax
from jax import export as jax_export
import numpy as np

from facernet_jax.deploy import graph

MIN_OPSET = 18
JAX2ONNX_VERSION = '0.17.1'
INSTALL_HINT = ('pip install -e ".[deploy]" && pip install --no-deps jax2onnx==0.17.1 '
                '(docs/deploy.md: jax2onnx declares orbax-checkpoint<0.11.37, which the training stack '
                'cannot use, so it is installed without its declared dependencies)')


def _import_jax2onnx():
  # jax2onnx imports every plugin, including examples for libraries we do not use (equinox, dm-pix);
  # their import failures are logged as warnings with tracebacks and are harmless.
  logging.getLogger('jax2onnx.plugins.plugin_system').setLevel(logging.ERROR)
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
    import onnx  # pylint: disable=g-import-not-at-top
    import onnxruntime  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError(f'ONNX export needs jax2onnx, onnx and onnxruntime ({e}); install them: '
                      f'{INSTALL_HINT}') from None
  return jax2onnx, onnx


def input_spec(image_size, batch, input_dtype):
  """jax.ShapeDtypeStruct of the images; batch None = a symbolic ('B') batch dimension."""
  size = int(image_size)
  if batch is None:
    shape = jax_export.symbolic_shape(f'B, {size}, {size}, 3')
  else:
    shape = (int(batch), size, size, 3)
  return jax.ShapeDtypeStruct(shape, np.dtype(input_dtype))


def clean_graph(model):
  """Drops the exporter's stale shape annotations and re-infers them (strict), then checks the model."""
  import onnx  # pylint: disable=g-import-not-at-top
  del model.graph.value_info[:]
  model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
  onnx.checker.check_model(model, full_check=True)
  return model


def optimise_for_runtime(model):
  """ONNX Runtime's basic optimisation level (BatchNorm folding, constant folding, transpose
  cancelling), which keeps standard ONNX ops only; returns the optimised ModelProto."""
  import onnx  # pylint: disable=g-import-not-at-top
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    src, dst = os.path.join(tmp, 'in.onnx'), os.path.join(tmp, 'out.onnx')
    onnx.save(model, src)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = dst
    options.log_severity_level = 3
    ort.InferenceSession(src, options, providers=['CPUExecutionProvider'])
    optimised = onnx.load(dst)
  left = [n.op_type for n in optimised.graph.node if n.op_type == 'BatchNormalization']
  if left:
    raise RuntimeError(f'{len(left)} BatchNormalization op(s) were not folded into a Conv')
  return optimised


def sink_transposes(model):
  """Moves each Transpose that feeds a constant-index Gather, a Clip / Relu / Sigmoid or a ReduceMean
  below it (or drops it).

  ONNX Runtime's transpose optimiser cancels most transposes but stops at these, which leaves
  NCHW -> NHWC -> NCHW round trips around the decoder's upsample and before the head's average pool.
  Gather(Transpose(x, p), axis a) = Transpose(Gather(x, axis p[a]), p); an element-wise op commutes
  with a Transpose; ReduceMean(Transpose(x, p), axes A, keepdims 0) = ReduceMean(x, axes p[A]) when
  the kept axes stay in order. A later optimiser pass cancels the moved transposes. Returns the count.
  """
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  g = model.graph
  inits = {t.name: t for t in g.initializer}
  moved = 0
  for node in list(g.node):
    producers = {o: n for n in g.node for o in n.output}
    src = producers.get(node.input[0]) if node.input else None
    if src is None or src.op_type != 'Transpose':
      continue
    uses = sum(node.input[0] in n.input for n in g.node) + sum(o.name == node.input[0] for o in g.output)
    if uses != 1:
      continue
    perm = list(next(a.ints for a in src.attribute if a.name == 'perm'))
    attrs = {a.name: a for a in node.attribute}
    unary = node.op_type in ('Clip', 'Relu', 'Sigmoid') and all(i in inits for i in node.input[1:])
    if unary or (node.op_type == 'Gather' and len(node.input) == 2 and node.input[1] in inits):
      out = node.output[0]
      mid = out + '_pre_transpose'
      node.input[0] = src.input[0]
      node.output[0] = mid
      if node.op_type == 'Gather':
        axis = (attrs['axis'].i if 'axis' in attrs else 0) % len(perm)
        for a in node.attribute:
          if a.name == 'axis':
            a.i = perm[axis]
        if 'axis' not in attrs:
          node.attribute.append(onnx.helper.make_attribute('axis', perm[axis]))
      src.input[0], src.output[0] = mid, out
      g.node.remove(src)
      g.node.insert(list(g.node).index(node) + 1, src)
      moved += 1
    elif (node.op_type == 'ReduceMean' and len(node.input) == 2 and node.input[1] in inits
          and attrs.get('keepdims') is not None and attrs['keepdims'].i == 0):
      axes = [int(a) % len(perm) for a in numpy_helper.to_array(inits[node.input[1]])]
      kept = [perm[i] for i in range(len(perm)) if i not in axes]
      if kept != sorted(kept):
        continue
      new_axes = numpy_helper.from_array(np.asarray(sorted(perm[a] for a in axes), np.int64),
                                         node.input[1] + '_sunk')
      g.initializer.append(new_axes)
      node.input[0], node.input[1] = src.input[0], new_axes.name
      g.node.remove(src)
      moved += 1
  return moved


def op_counts(model):
  """{op type: count} of a ModelProto (docs/deploy.md lists them)."""
  counts = {}
  for node in model.graph.node:
    counts[node.op_type] = counts.get(node.op_type, 0) + 1
  return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def export_onnx(config, variables, path=None, image_size=None, batch=None, input_dtype='float32',
                opset=MIN_OPSET):
  """Exports the eval-mode network to ONNX. Returns (ModelProto, sidecar dict).

  variables: the network's {'params', 'batch_stats'} or a checkpoint's (train.load_for_inference).
  image_size: default config.image_size; another size only for fully convolutional networks (the
  appearance branch's Dense over the flattened map fixes the size it was trained at).
  batch: None = dynamic, else the fixed batch size. Writes `path` and `path + '.json'` when given
  (written to a temporary name first: nothing half-written).
  """
  if opset < MIN_OPSET:
    raise ValueError(f'opset must be >= {MIN_OPSET} (lower opsets give invalid models), got {opset}')
  image_size = check_image_size(config, image_size)
  if batch is not None and int(batch) < 1:
    raise ValueError(f'batch must be >= 1 or None (dynamic), got {batch}')
  jax2onnx, onnx = _import_jax2onnx()
  fn = graph.network_for_export(config, graph.network_variables(variables), input_dtype)
  model = jax2onnx.to_onnx(fn, [input_spec(image_size, batch, input_dtype)], model_name='facernet',
                           opset=int(opset), input_names=['images'], output_names=['coefficients'])
  model = optimise_for_runtime(clean_graph(model))
  if sink_transposes(model):
    model = optimise_for_runtime(clean_graph(model))
  info = graph.sidecar(config, 'onnx', image_size, batch, input_dtype,
                       {'opset': int(opset), 'exporter': f'jax2onnx {jax2onnx_version()}',
                        'ops': op_counts(model)})
  for key in ('image_size', 'model'):
    entry = model.metadata_props.add()
    entry.key, entry.value = key, str(info[key])
  if path is not None:
    write_atomic(path, model.SerializeToString(), info)
  return model, info


def jax2onnx_version():
  return metadata.version('jax2onnx')


def check_image_size(config, image_size):
  """The export size: config.image_size unless given; refused where the network fixes it."""
  trained = int(config.image_size)
  size = trained if image_size is None else int(image_size)
  if size < 1:
    raise ValueError(f'image size must be >= 1, got {size}')
  if size != trained and config.model.get('appearance_branch', False):
    raise ValueError(f'this network has the appearance branch (config.model.appearance_branch), whose '
                     f'Dense layer reads the flattened {trained} px map: it exports only at its training '
                     f'size {trained}, not {size} (leave --image-size out)')
  return size


def write_atomic(path, data, info):
  """Writes `path` (bytes) and `path + '.json'` via temporary files renamed into place."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'output folder {folder} does not exist; create it first')
  for target, payload in ((path, data), (path + '.json', json.dumps(info, indent=1).encode())):
    tmp = target + '.tmp'
    with open(tmp, 'wb') as f:
      f.write(payload)
    os.replace(tmp, target)
