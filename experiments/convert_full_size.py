"""The BFM converter at the real size: time, peak memory and output size (an experiment, not a test).

The Basel Face Model cannot be redistributed, so this writes a SYNTHETIC `01_MorphableModel.mat` with the
real keys and sizes (shapeMU / texMU 160,470 x 1, shapePC / texPC 160,470 x 199, shapeEV / texEV 199 x 1,
tl 106,466 x 3, segbin 53,490 x 4; MATLAB v5 as scipy.io.savemat writes it, random values) and a
synthetic `Exp_Pca.bin` in Guo et al.'s layout (int32 79, float32 expMU 3 x 53,215, float32 expPC
79 rows of 3 x 53,215) into a scratch folder under /tmp, takes the REAL index files (BFM_front_idx.mat,
BFM_exp_idx.mat, facemodel_info.mat, std_exp.txt) from ../shared/data/bfm_topology (or --index-dir),
then runs the documented command

  python -m facernet_jax.face_model.convert --bfm 01_MorphableModel.mat --expression Exp_Pca.bin \
      --index-dir DIR --out model.npz

in a subprocess under /usr/bin/time -v (falls back to resource.getrusage) and reports its wall time,
peak resident memory and the .npz size. It also checks a few output rows against numpy arithmetic on
the input arrays (transferBFM09's formulas), so a fast but wrong converter would show.

  python experiments/convert_full_size.py                  # float32 bases (--dtype float64: worst case)
"""
import argparse
import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.io

REPO = pathlib.Path(__file__).resolve().parents[1]
INDEX_DIR = REPO.parent / 'shared' / 'data' / 'bfm_topology'
N_BFM, N_EXP, N_TRI, K_SHAPE, K_EXP = 53490, 53215, 106466, 199, 79


def write_bfm(path, dtype, rng):
  """01_MorphableModel.mat with the real keys and shapes (random values of plausible scale)."""
  n3 = 3 * N_BFM
  arrays = {
      'shapeMU': (rng.standard_normal((n3, 1)) * 5e4).astype(dtype),  # micrometres, as the BFM
      'shapePC': rng.standard_normal((n3, K_SHAPE), dtype=np.float32).astype(dtype, copy=False) * 1e-3,
      'shapeEV': np.sort(rng.uniform(1e3, 1e5, (K_SHAPE, 1)))[::-1].astype(dtype),
      'texMU': rng.uniform(40, 200, (n3, 1)).astype(dtype),
      'texPC': rng.standard_normal((n3, K_SHAPE), dtype=np.float32).astype(dtype, copy=False) * 1e-3,
      'texEV': np.sort(rng.uniform(1e3, 1e4, (K_SHAPE, 1)))[::-1].astype(dtype),
      'tl': rng.integers(1, N_BFM + 1, (N_TRI, 3)).astype(np.float64),
      'segbin': rng.integers(0, 2, (N_BFM, 4)).astype(np.float64),
  }
  scipy.io.savemat(path, arrays, do_compression=False)
  return arrays


def write_exp_pca(path, rng):
  """Exp_Pca.bin: little-endian int32 exp_dim, float32 expMU (3N), float32 expPC (exp_dim rows of 3N)."""
  n3 = 3 * N_EXP
  with open(path, 'wb') as f:
    f.write(np.int32(K_EXP).astype('<i4').tobytes())
    f.write(rng.standard_normal(n3, dtype=np.float32).astype('<f4').tobytes())
    rows = rng.standard_normal((K_EXP, n3), dtype=np.float32).astype('<f4')
    f.write(rows.tobytes())
  return rows


def run_converter(cmd, env):
  """Runs cmd; returns (wall seconds, peak RSS MiB, stdout)."""
  timer = shutil.which('time') or ('/usr/bin/time' if os.path.exists('/usr/bin/time') else None)
  full = ([timer, '-v'] if timer else []) + cmd
  t0 = time.perf_counter()
  r = subprocess.run(full, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if r.returncode != 0:
    sys.exit(f'converter failed ({r.returncode}):\n{r.stdout}\n{r.stderr}')
  m = re.search(r'Maximum resident set size \(kbytes\): (\d+)', r.stderr)
  peak = int(m.group(1)) / 1024 if m else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  return wall, peak, r.stdout


def check_rows(out, bfm, exp_rows, index_dir, rng):
  """A few output rows vs transferBFM09's formulas computed here in float64."""
  front = scipy.io.loadmat(os.path.join(index_dir, 'BFM_front_idx.mat'))['idx'].astype(np.int64).ravel() - 1
  trim = scipy.io.loadmat(os.path.join(index_dir, 'BFM_exp_idx.mat'))['trimIndex'].astype(np.int64).ravel() - 1
  std = np.loadtxt(os.path.join(index_dir, 'std_exp.txt'))
  with np.load(out, allow_pickle=False) as d:
    shape_basis, tex_basis, exp_basis = d['shape_basis'], d['texture_basis'], d['expression_basis']
  worst = 0.0
  for v in rng.choice(len(front), 5, replace=False):
    s = trim[front[v]]
    for c in range(3):
      want_id = bfm['shapePC'][3 * s + c].astype(np.float64) * bfm['shapeEV'].ravel() / 1e5
      want_tex = bfm['texPC'][3 * s + c].astype(np.float64) * bfm['texEV'].ravel() / 255.0
      want_exp = exp_rows[:64, 3 * front[v] + c].astype(np.float64) * std[:64] / 1e5
      for got, want in ((shape_basis[3 * v + c], want_id), (tex_basis[3 * v + c], want_tex),
                        (exp_basis[3 * v + c], want_exp)):
        worst = max(worst, float(np.max(np.abs(got - want) / (np.abs(want).max() + 1e-30))))
  return worst


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--index-dir', default=str(INDEX_DIR),
                 help='folder with the real BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat, std_exp.txt')
  p.add_argument('--dtype', choices=('float32', 'float64'), default='float32',
                 help='dtype of the synthetic BFM arrays (MATLAB single or double)')
  p.add_argument('--scratch', default=None, help='scratch folder (default: a new one under /tmp, removed after)')
  p.add_argument('--keep', action='store_true', help='keep the scratch folder')
  args = p.parse_args()
  if not os.path.isfile(os.path.join(args.index_dir, 'BFM_front_idx.mat')):
    sys.exit(f'{args.index_dir}: no BFM_front_idx.mat; pass --index-dir with Deep3DFaceRecon\'s BFM/ index files')
  scratch = args.scratch or tempfile.mkdtemp(prefix='convert_full_', dir='/tmp')
  os.makedirs(scratch, exist_ok=True)
  rng = np.random.default_rng(0)
  try:
    t0 = time.perf_counter()
    bfm_path = os.path.join(scratch, '01_MorphableModel.mat')
    exp_path = os.path.join(scratch, 'Exp_Pca.bin')
    bfm = write_bfm(bfm_path, np.dtype(args.dtype), rng)
    exp_rows = write_exp_pca(exp_path, rng)
    print(f'wrote synthetic inputs in {time.perf_counter() - t0:.1f} s: 01_MorphableModel.mat '
          f'{os.path.getsize(bfm_path) / 2**20:.0f} MiB ({args.dtype}), Exp_Pca.bin '
          f'{os.path.getsize(exp_path) / 2**20:.1f} MiB')
    out = os.path.join(scratch, 'model.npz')
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    cmd = [sys.executable, '-m', 'facernet_jax.face_model.convert', '--bfm', bfm_path, '--expression', exp_path,
           '--index-dir', args.index_dir, '--out', out]
    wall, peak, stdout = run_converter(cmd, env)
    print(stdout.strip())
    worst = check_rows(out, bfm, exp_rows, args.index_dir, rng)
    print(f'converter: wall {wall:.1f} s, peak RSS {peak:.0f} MiB, output {os.path.getsize(out) / 2**20:.1f} MiB; '
          f'max relative error of 15 checked basis rows vs numpy: {worst:.1e}')
    print(f'load average: {os.getloadavg()[0]:.2f} (other jobs share this machine)')
  finally:
    if not args.keep:
      shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
  main()
