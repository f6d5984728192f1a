"""python -m facernet_jax.deploy: export a trained network to ONNX or LiteRT (TFLite) + a JSON sidecar.

  python -m facernet_jax.deploy --workdir=runs/default --out=facernet.onnx
  python -m facernet_jax.deploy --checkpoint=runs/default/checkpoints/10000 --out=f.tflite --format=tflite

After writing, it runs the file and the JAX model on the same random images and prints the largest
difference (--no-check skips that). Exit status 2 for a missing / unreadable checkpoint or a bad
option, with nothing written.
"""
import argparse
import os
import sys

import jax
import numpy as np

from facernet_jax import deploy
from facernet_jax import train
from facernet_jax.deploy import graph

# Outputs of an exported file equal the JAX model's within this (tests/test_deploy.py checks it):
# |exported - jax| <= ATOL + RTOL * |jax|, float32 throughout.
RTOL, ATOL = 1e-4, 1e-4


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m facernet_jax.deploy', description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument('--workdir', help='training workdir (newest checkpoint)')
  src.add_argument('--checkpoint', help='one checkpoint directory (workdir/checkpoints/STEP)')
  p.add_argument('--out', required=True, help='output file (.onnx or .tflite); the sidecar is OUT.json')
  p.add_argument('--format', choices=('onnx', 'tflite'), default=None,
                 help='default: from the --out suffix (onnx unless it ends in .tflite)')
  p.add_argument('--batch', default=None,
                 help="fixed batch size, or 'dynamic' (default: dynamic for onnx, 1 for tflite)")
  p.add_argument('--input-dtype', choices=('float32', 'uint8'), default='float32',
                 help='float32 images in [0, 1], or uint8 0-255 (divided by 255 inside the model)')
  p.add_argument('--image-size', type=int, default=None, help='input size (default: the training size)')
  p.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 18)')
  p.add_argument('--no-check', action='store_true', help='skip the comparison with the JAX model')
  args = p.parse_args(argv)
  if args.format is None:
    args.format = 'tflite' if args.out.endswith('.tflite') else 'onnx'
  if args.batch in (None, 'dynamic'):
    args.batch = None if (args.batch == 'dynamic' or args.format == 'onnx') else 1
  else:
    try:
      args.batch = int(args.batch)
    except ValueError:
      p.error(f"--batch must be an integer or 'dynamic', got {args.batch!r}")
    if args.batch < 1:
      p.error('--batch must be >= 1')
  if args.format == 'tflite' and args.batch is None:
    p.error('--format=tflite needs a fixed --batch')
  return args


def compare_with_jax(config, variables, runner, image_size, input_dtype, batch):
  """Max |exported - jax| and whether it is within RTOL / ATOL, on random images."""
  rng = np.random.default_rng(0)
  n = batch or 2
  if input_dtype == 'uint8':
    images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
  else:
    images = rng.random((n, image_size, image_size, 3), dtype=np.float32)
  ref = np.asarray(jax.jit(graph.network_for_export(config, graph.network_variables(variables),
                                                    input_dtype))(images))
  out = runner(images)
  diff = np.abs(out - ref)
  return float(diff.max()), bool(np.all(diff <= ATOL + RTOL * np.abs(ref)))


def main(argv=None):
  try:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
  except SystemExit as e:
    return int(e.code or 0)
  path = args.checkpoint or args.workdir
  if not os.path.exists(path):
    print(f'error: checkpoint or workdir {path!r} does not exist; train a model first '
          f'(python -m facernet_jax.train --config=... --workdir=DIR)', file=sys.stderr)
    return 2
  try:
    config, variables = train.load_for_inference(path)
  except Exception as e:  # pylint: disable=broad-except
    print(f'error: cannot load a trained model from {path!r}: {e}', file=sys.stderr)
    return 2
  export = deploy.export_onnx if args.format == 'onnx' else deploy.export_tflite
  kwargs = dict(image_size=args.image_size, batch=args.batch, input_dtype=args.input_dtype)
  if args.format == 'onnx':
    kwargs['opset'] = args.opset
  try:
    _, info = export(config, variables, args.out, **kwargs)
  except (ValueError, ImportError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB) and {args.out}.json: '
        f'{config.model.name}, {info["image_size"]} px, batch {args.batch or "dynamic"}, {args.input_dtype} input')
  if 'ops' in info:
    print('ops: ' + ', '.join(f'{k} {v}' for k, v in info['ops'].items()))
  if not args.no_check:
    runner = (deploy.OnnxRunner if args.format == 'onnx' else deploy.TFLiteRunner)(args.out)
    err, ok = compare_with_jax(config, variables, runner, info['image_size'], args.input_dtype, args.batch)
    print(f'check against the JAX model on random images: max |difference| {err:.2e} '
          f'({"within" if ok else "OUTSIDE"} rtol {RTOL:g}, atol {ATOL:g})')
    if not ok:
      return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
