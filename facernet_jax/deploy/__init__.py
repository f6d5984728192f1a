"""Deployment: the eval-mode network as a self-contained ONNX or LiteRT (TFLite) file, and runners.

  python -m facernet_jax.deploy --workdir=runs/default --out=model.onnx
  python -m facernet_jax.deploy --workdir=runs/default --out=model.tflite --format=tflite

`export_onnx` / `export_tflite` write the file plus a JSON sidecar (`<file>.json`: image size, input
and output layout, coefficient slices, the training config); `OnnxRunner` / `TFLiteRunner` load
both and map NHWC images to the 495 coefficients of Eq 10. The exporters are optional extras
(`pip install -e ".[deploy]"` then `pip install --no-deps jax2onnx==0.17.1`, docs/deploy.md); this
package imports them only when called.
"""
from facernet_jax.deploy.graph import network_for_export
from facernet_jax.deploy.graph import sidecar
from facernet_jax.deploy.onnx_export import export_onnx
from facernet_jax.deploy.runner import OnnxRunner
from facernet_jax.deploy.runner import TFLiteRunner
from facernet_jax.deploy.runner import read_sidecar
from facernet_jax.deploy.tflite_export import export_tflite
