"""The end-of-run report of a training workdir, as a command (facernet_jax.run_report does the work).

  python -m facernet_jax.report --workdir=runs/default [--split=test] [--shared_data=../shared/data]

Writes report.png / report.html / report.json into the workdir (training curves, test faces with their
renders and landmarks, a few real photos when the shared data is there, the metrics against the mean
face and the untrained network) and prints the lines that end a training run.
"""
import argparse
import os
import sys

from facernet_jax import run_report
from facernet_jax import train


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m facernet_jax.report', description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True, help='training workdir (newest checkpoint, event files)')
  p.add_argument('--split', default=None, help='dataset split of the contact sheet and metrics (default: '
                                               'the config\'s test split)')
  p.add_argument('--shared_data', default=run_report.DEFAULT_SHARED_DATA, help='folder with faces68/ (real photos)')
  p.add_argument('--max_images', type=int, default=-1, help='at most this many images of the split')
  args = p.parse_args(argv)
  if not os.path.isdir(args.workdir):
    print(f'error: workdir {args.workdir!r} does not exist (train first: python -m facernet_jax.train '
          '--config=facernet_jax/configs/default.py --workdir=DIR)', file=sys.stderr)
    return 2
  try:
    config, variables = train.load_for_inference(args.workdir)
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  network, decoder = train.create_networks(config)
  params, batch_stats = train.initialized(train.init_rng(config), config, network, decoder)
  report = run_report.write_report(args.workdir, config, variables, {'params': params, 'batch_stats': batch_stats},
                                   network, decoder, args.split, args.shared_data, args.max_images)
  for line in run_report.ending_lines(config, report['metrics']['trained'], report, os.path.abspath(args.workdir)):
    print(line)
  return 0


if __name__ == '__main__':
  sys.exit(main())
