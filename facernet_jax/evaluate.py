"""Benchmarks of Sec 4.2 and the standalone NME protocol tool.

  python -m facernet_jax.evaluate nme --pred PRED.npy --gt GT.npy [--yaw YAW.npy] [--csv F] [--json F] [--ced F.png]
      scores any method's landmarks under one protocol (Eq 18, 3DDFA's yaw bins).
  python -m facernet_jax.evaluate --workdir=DIR [--config=FILE.py] [--out=DIR] [--benchmarks=...]
      runs the benchmarks on a trained model (see docs/evaluation.md).

This module is the command line only: the protocol is facernet_jax.nme_protocol, the model
facernet_jax.inference, the benchmarks facernet_jax.benchmarks, the written files
facernet_jax.benchmark_outputs.
"""
import argparse
import importlib.util
import os
import sys

from facernet_jax import benchmark_outputs
from facernet_jax import benchmarks
from facernet_jax import export
from facernet_jax import inference
from facernet_jax import metrics
from facernet_jax import nme_protocol
from facernet_jax.benchmark_outputs import write_outputs
from facernet_jax.benchmarks import read_aflw2000
from facernet_jax.benchmarks import run_aflw2000
from facernet_jax.benchmarks import run_lfpa
from facernet_jax.benchmarks import run_synthetic
from facernet_jax.nme_protocol import InputError
from facernet_jax.nme_protocol import load_landmark_array
from facernet_jax.nme_protocol import load_visibility
from facernet_jax.nme_protocol import load_yaw
from facernet_jax.nme_protocol import per_image_csv
from facernet_jax.nme_protocol import read_npy
from facernet_jax.nme_protocol import score_landmarks

# Kept importable from here (they moved to the modules above).
__all__ = ['InputError', 'benchmark_main', 'load_config_file', 'load_landmark_array', 'load_visibility',
           'load_yaw', 'main', 'nme_main', 'per_image_csv', 'read_aflw2000', 'read_npy', 'run_aflw2000',
           'run_lfpa', 'run_synthetic', 'score_landmarks', 'write_outputs']


def nme_main(argv):
  """`nme` subcommand: returns the exit status."""
  p = argparse.ArgumentParser(
      prog='python -m facernet_jax.evaluate nme',
      description='NME (Eq 18) of landmark predictions, normalised by sqrt(w*h) of the ground-truth '
                  'landmark box, by |yaw| bin [0,30], (30,60], (60,90] (3DDFA protocol: >90 counts as III).')
  p.add_argument('--pred', required=True, help='.npy predictions: (n,68,2), (n,68,3), (n,2,68) or (n,3,68)')
  p.add_argument('--gt', required=True, help='.npy ground truth, same layouts (e.g. 3DDFA AFLW2000-3D.pts68.npy)')
  p.add_argument('--yaw', help='.npy yaw angles in degrees, one per image (e.g. 3DDFA AFLW2000-3D.pose.npy)')
  p.add_argument('--visible', help='.npy (n, K) visibility flags: invisible points are left out (AFLW-LFPA)')
  p.add_argument('--pred-shift', type=float, default=0.0,
                 help='added to predicted x and y before scoring, to reconcile pixel conventions '
                      '(e.g. -0.5 to turn continuous coordinates into 0-based pixel indices)')
  p.add_argument('--name', default='method', help='row name in the table')
  p.add_argument('--csv', help='write per-image NME to this CSV file')
  p.add_argument('--json', help='write the summary table (percent) to this JSON file')
  p.add_argument('--ced', help='write the CED curve to this PNG file')
  p.add_argument('--ced-max', type=float, default=10.0, help='x-axis limit of the CED plot, percent')
  args = p.parse_args(argv)

  pred = nme_protocol.load_landmark_array(args.pred, 'prediction')
  gt = nme_protocol.load_landmark_array(args.gt, 'ground-truth')
  yaw = nme_protocol.load_yaw(args.yaw, len(gt)) if args.yaw else None
  visible = nme_protocol.load_visibility(args.visible, gt.shape[:2]) if args.visible else None
  nme, table = nme_protocol.score_landmarks(pred, gt, yaw, args.pred_shift, visible)
  print(metrics.format_nme_table([(args.name, table)],
                                 title=f'NME (%) of {len(nme)} images, {pred.shape[1]} points, '
                                       f'normalised by sqrt(w*h) of the GT landmark box'))
  if yaw is None:
    print('(no --yaw: only the plain mean is defined)')
  if args.csv:
    export.atomic_write_bytes(args.csv, nme_protocol.per_image_csv(nme, yaw).encode())
  if args.json:
    summary = table.as_dict()
    summary.update(pred=os.path.abspath(args.pred), gt=os.path.abspath(args.gt), points=int(pred.shape[1]),
                   pred_shift=args.pred_shift, name=args.name)
    export.write_json(args.json, summary)
  if args.ced:
    benchmark_outputs.plot_ced({args.name: nme}, args.ced, max_error=args.ced_max / 100.0,
                               title=f'CED ({len(nme)} images, {pred.shape[1]} points)')
  return 0


def load_config_file(path):
  """get_config() of a config .py file (as the training CLI takes it)."""
  if not os.path.isfile(path):
    raise InputError(f'config file {path!r} does not exist')
  spec = importlib.util.spec_from_file_location('facernet_eval_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def benchmark_main(argv):
  """Benchmarks of a trained model; returns the exit status."""
  p = argparse.ArgumentParser(
      prog='python -m facernet_jax.evaluate',
      description='Benchmarks of Sec 4.2 on a trained model. Subcommand `nme` scores landmark files.')
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument('--workdir', help='training workdir (newest checkpoint)')
  src.add_argument('--checkpoint', help='one checkpoint directory')
  p.add_argument('--config', help='config .py to use instead of the checkpoint\'s (same architecture)')
  p.add_argument('--out', help='output folder (default: WORKDIR/eval)')
  p.add_argument('--benchmarks', default='auto',
                 help="comma-separated: synthetic, aflw2000_3d, aflw_lfpa; 'auto' (default): the "
                      "evaluation datasets of the model's config (config.eval_datasets, e.g. the paper "
                      "config's AFLW2000-3D and AFLW-LFPA), or synthetic for a synthetic-face-model run")
  p.add_argument('--aflw2000', help='folder with AFLW2000-3D imageXXXXX.jpg + .mat (default: '
                 "AFLW2000/ in the config's dataset manual_dir)")
  p.add_argument('--protocol-dir', help="folder with 3DDFA's AFLW2000-3D arrays (roi boxes, re-annotation)")
  p.add_argument('--lfpa', help='AFLW-LFPA folder (test/NAME.jpg + NAME.mat with pt2d (2, 34); default: '
                 "AFLW_LFPA/ in the config's dataset manual_dir)")
  p.add_argument('--lfpa-points', help='.npy with the 34 face-model vertex indices of the LFPA landmarks '
                 "(default: the config's eval_datasets.<lfpa>.vertex_file)")
  p.add_argument('--max-examples', type=int, default=-1, help='limit per benchmark (-1: all)')
  p.add_argument('--batch-size', type=int, default=16)
  args = p.parse_args(argv)
  path = args.workdir or args.checkpoint
  try:
    rec = inference.load_model(path, args.batch_size, render_size=None)
  except inference.ModelError as e:
    raise InputError(str(e)) from None
  if args.config:
    rec = inference.Reconstructor(load_config_file(args.config), rec.variables, args.batch_size, None)
  names = [b.strip() for b in args.benchmarks.split(',') if b.strip()]
  synthetic_model = rec.config.face_model.get('source', '') == 'synthetic'
  if names == ['auto']:
    names = benchmarks.config_benchmarks(rec.config)
    if not names:
      raise InputError('the model\'s config names no evaluation datasets (config.eval_datasets) and '
                       'does not use the synthetic face model: choose --benchmarks=aflw2000_3d '
                       'and/or aflw_lfpa with their data folders')
    benchmarks.progress(f"benchmarks of the model's config: {', '.join(names)}")
  unknown = set(names) - {'synthetic', 'aflw2000_3d', 'aflw_lfpa'}
  if unknown:
    raise InputError(f'unknown benchmarks {sorted(unknown)}; choose from synthetic, aflw2000_3d, aflw_lfpa')
  results = []
  for name in names:
    if name == 'synthetic':
      if not synthetic_model and not args.config:
        raise InputError(f'the synthetic benchmark needs the synthetic face model; this model uses '
                         f'{rec.config.face_model.get("source", "")!r}: choose '
                         '--benchmarks=aflw2000_3d,aflw_lfpa (the default, auto, picks them from '
                         'the config when it names them)')
      results.append(benchmarks.run_synthetic(rec, args.max_examples))
    elif name == 'aflw2000_3d':
      folder = args.aflw2000 or benchmarks.config_folder(rec.config, 'aflw2000_3d')
      if not folder:
        raise InputError('aflw2000_3d needs --aflw2000=FOLDER (imageXXXXX.jpg + .mat), or '
                         'AFLW2000/ in the config\'s dataset.manual_dir')
      results.append(benchmarks.run_aflw2000(rec, folder, args.protocol_dir, args.max_examples))
    elif name == 'aflw_lfpa':
      folder = args.lfpa or benchmarks.config_folder(rec.config, 'aflw_lfpa')
      points_file = args.lfpa_points or benchmarks.config_vertex_file(rec.config)
      if not (folder and points_file):
        raise InputError('aflw_lfpa needs --lfpa=FOLDER and --lfpa-points=FILE.npy (34 vertex indices of the '
                         'face model; see docs/evaluation.md), or the config\'s AFLW_LFPA/ folder and '
                         'eval_datasets vertex_file')
      points = nme_protocol.read_npy(points_file, '--lfpa-points', 'iu', 'integer vertex indices')
      results.append(benchmarks.run_lfpa(rec, folder, points, args.max_examples))
  if not results:
    raise InputError('no benchmark ran; nothing written')
  out_dir = args.out or os.path.join(path, 'eval')
  report = benchmark_outputs.write_outputs(out_dir, results)
  print(report)
  written = ['tables.txt', 'results.json'] + [f'ced_{r["name"]}.png' for r in results]
  print(f'written to {out_dir}: {", ".join(written)}')
  return 0


# ----------------------------------------------------------------------------- entry point

def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    if argv[:1] == ['nme']:
      return nme_main(argv[1:])
    return benchmark_main(argv)
  except InputError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
