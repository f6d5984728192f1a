"""The paper's setting end to end, as a user runs it (docs/data_and_losses.md, docs/evaluation.md).

Generates, in the real formats and layouts: a small BFM (`01_MorphableModel.mat` with the real keys,
`Exp_Pca.bin`, Deep3DFaceRecon's index files; a face-shaped mesh of 144 vertices), and 300W-LP (subset
folders, `_Flip` twins, `landmarks/`), CelebA (`img_align_celeba/` + `celeba_68.csv` in the format
the reader documents; the real one is made by `make_celeba68`, which needs dlib's predictor and real
faces), AFLW2000-3D (`AFLW2000/imageXXXXX.jpg + .mat`) and AFLW-LFPA (`AFLW_LFPA/test/`) folders.
Then runs the documented commands: convert, train configs/paper.py (the paper network, overridden
to 2 steps of batch 2) with evaluation on AFLW2000-3D and AFLW-LFPA, resume to step 3, and
`evaluate`; checks the checkpoint steps, the resumed step, the per-dataset evaluation lines and
the NME table rows per yaw bin.
"""
import csv
import json
import os
import pathlib
import re
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io

from facernet_jax import train as train_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
YAWS = (10.0, 45.0, 75.0, -20.0)  # AFLW2000-3D test faces: bins I, II, III, I


def _face_points(cx, cy, r):
  t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
  return np.stack([cx + r * np.cos(t), cy + 0.9 * r * np.sin(t)], -1)


def _face_image(h, w, points, seed):
  """A face-coloured ellipse over the landmarks on a noisy background, dark dots at the points."""
  rng = np.random.default_rng(seed)
  img = rng.integers(40, 120, (h, w, 3)).astype(np.uint8)
  c, r = points.mean(0), (points.max(0) - points.min(0)) / 2
  cv2.ellipse(img, (int(c[0]), int(c[1])), (int(r[0]), int(r[1])), 0, 0, 360, (150, 170, 210), -1)
  for x, y in points[::4]:
    cv2.circle(img, (int(x), int(y)), 2, (60, 50, 40), -1)
  return img


def _jpg(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  assert cv2.imwrite(str(path), image)


def _write_bfm(root):
  """01_MorphableModel.mat / Exp_Pca.bin / index files around the synthetic model's face mesh."""
  from facernet_jax.face_model import build_synthetic_model  # pylint: disable=g-import-not-at-top
  m = build_synthetic_model(resolution=12)
  n = m.num_vertices
  rng = np.random.default_rng(0)
  n_exp, n_bfm = n + 3, n + 5  # the real counts are 35,709 < 53,215 < 53,490
  trim = np.sort(rng.choice(n_bfm, n_exp, replace=False)) + 1   # BFM_exp_idx: 1-based into BFM
  front = np.sort(rng.choice(n_exp, n, replace=False)) + 1      # BFM_front_idx: into the exp model
  shape_mu = rng.normal(size=(n_bfm, 3)) * 1e5
  shape_mu[trim[front - 1] - 1] = m.mean_shape * 1e5            # BFM micrometres
  bfm = {'shapeMU': shape_mu.reshape(-1, 1),
         'shapePC': rng.normal(size=(3 * n_bfm, 199)) / np.sqrt(3 * n_bfm),
         'shapeEV': (np.geomspace(3e3, 30, 199) * np.sqrt(3 * n_bfm))[:, None],
         'texMU': np.full((3 * n_bfm, 1), 180.0),
         'texPC': rng.normal(size=(3 * n_bfm, 199)) / np.sqrt(3 * n_bfm),
         'texEV': np.geomspace(30, 1, 199)[:, None] * np.sqrt(3 * n_bfm),
         'tl': np.zeros((1, 3)), 'segbin': np.zeros((n_bfm, 4))}
  bfm_dir = root / 'BFM'
  bfm_dir.mkdir()
  scipy.io.savemat(bfm_dir / '01_MorphableModel.mat', bfm)
  exp_pc = (rng.normal(size=(79, 3 * n_exp)) / np.sqrt(3 * n_exp)).astype('<f4')
  (bfm_dir / 'Exp_Pca.bin').write_bytes(
      struct.pack('<i', 79) + np.zeros(3 * n_exp, '<f4').tobytes() + exp_pc.tobytes())
  np.savetxt(bfm_dir / 'std_exp.txt', np.geomspace(2e3, 20, 79)[None], fmt='%.6g')
  scipy.io.savemat(bfm_dir / 'BFM_exp_idx.mat', {'trimIndex': trim[:, None].astype(np.uint16)})
  scipy.io.savemat(bfm_dir / 'BFM_front_idx.mat', {'idx': front[:, None].astype(np.float64)})
  f = m.num_triangles
  point_buf = np.where(m.vertex_faces >= 0, m.vertex_faces + 1, f + 1)  # BFM pads with F + 1
  scipy.io.savemat(bfm_dir / 'facemodel_info.mat', {
      'tri': (m.triangles + 1).astype(np.float64), 'point_buf': point_buf.astype(np.float64),
      'keypoints': (m.landmark_indices + 1)[None].astype(np.float64),
      'skinmask': np.ones((1, n)), 'frontmask2_idx': np.arange(1, n + 1)[:, None].astype(np.float64),
      'tri_mask2': (m.triangles + 1).astype(np.float64)})
  return bfm_dir


def _write_data(data):
  """300W-LP, CelebA, AFLW2000-3D and AFLW-LFPA folders in their release layouts."""
  k = 0
  for subset in ('AFW', 'HELEN', 'IBUG', 'LFPW'):
    for i in range(2):
      k += 1
      pts = _face_points(70 + 5 * i, 75, 30 + 3 * i)
      name = f'{subset}_{100 + k}_1_{i}'
      for folder, p in ((subset, pts), (subset + '_Flip', np.stack([140 - pts[:, 0], pts[:, 1]], -1))):
        _jpg(data / '300W_LP' / folder / f'{name}.jpg', _face_image(150, 140, p, k))
        scipy.io.savemat(data / '300W_LP' / folder / f'{name}.mat', {
            'pt2d': (p + 0.5).T, 'Pose_Para': [[0.1, np.radians(15.0 * i), 0, 70, 75, 0, 1e-3]],
            'roi': [[10, 10, 130, 140]], 'Shape_Para': np.zeros((199, 1)),
            'Exp_Para': np.zeros((29, 1))})
      os.makedirs(data / '300W_LP' / 'landmarks' / subset, exist_ok=True)
      scipy.io.savemat(data / '300W_LP' / 'landmarks' / subset / f'{name}_pts.mat',
                       {'pts_2d': pts + 0.5, 'pts_3d': pts + 0.5})
  rows = []
  for i in range(6):
    pts = _face_points(89, 120, 35)
    _jpg(data / 'img_align_celeba' / f'{i + 1:06d}.jpg', _face_image(218, 178, pts, 50 + i))
    rows.append([f'{i + 1:06d}.jpg'] + [f'{v:.2f}' for v in (pts - 0.5).ravel()])
  with open(data / 'celeba_68.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['filename'] + [f'{a}{j}' for j in range(68) for a in 'xy'])
    w.writerows(rows)
  for i, yaw in enumerate(YAWS):
    pts = _face_points(80, 85, 32)
    _jpg(data / 'AFLW2000' / f'image{i + 1:05d}.jpg', _face_image(160, 160, pts, 100 + i))
    scipy.io.savemat(data / 'AFLW2000' / f'image{i + 1:05d}.mat', {
        'pt3d_68': np.concatenate([(pts + 0.5).T, np.zeros((1, 68))]),
        'pt2d': (pts[:21] + 0.5).T, 'Pose_Para': [[0.0, np.radians(yaw), 0.0, 80, 85, 0, 1e-3]]})
  for i in range(3):
    pts = _face_points(80, 85, 32)[::2]
    vis = np.ones(34)
    vis[:5 * i] = 0
    _jpg(data / 'AFLW_LFPA' / 'test' / f'face{i}.jpg', _face_image(160, 160, pts, 200 + i))
    scipy.io.savemat(data / 'AFLW_LFPA' / 'test' / f'face{i}.mat', {
        'pt2d': (pts + 0.5).T, 'visibility': vis, 'Pose_Para': [[0, np.radians(20 * i), 0, 0, 0, 0, 1]]})


def _run(args, env, cwd):
  r = subprocess.run([sys.executable, '-m'] + args, capture_output=True, text=True, env=env,
                     cwd=cwd, timeout=1800)  # generous: other jobs may share the CPU
  assert r.returncode == 0, f'{args[0]} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}'
  return r.stdout


def test_paper_config_end_to_end(tmp_path):
  bfm_dir = _write_bfm(tmp_path)
  data = tmp_path / 'data'
  _write_data(data)
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.pop('XLA_FLAGS', None)
  cwd = tmp_path

  # 1. Convert the BFM (docs/face_model.md).
  out = _run(['facernet_jax.face_model.convert', '--bfm', str(bfm_dir / '01_MorphableModel.mat'),
              '--expression', str(bfm_dir / 'Exp_Pca.bin'), '--index-dir', str(bfm_dir),
              '--out', 'bfm_front_199.npz'], env, cwd)
  assert (tmp_path / 'bfm_front_199.npz').is_file() and '144 vertices' in out
  _run(['facernet_jax.data.real.lfpa_points', '--model', 'bfm_front_199.npz',
        '--out', 'lfpa_34_vertices.npy'], env, cwd)
  lfpa = np.load(tmp_path / 'lfpa_34_vertices.npy')
  assert lfpa.shape == (34,) and (lfpa >= 0).sum() == 19  # the 19 points of the default mapping

  # 2. Train the paper config (docs/data_and_losses.md), small: 2 steps of batch 2.
  workdir = tmp_path / 'runs' / 'paper'
  train = ['facernet_jax.train', f'--config={REPO}/facernet_jax/configs/paper.py',
           f'--workdir={workdir}', '--config.face_model.source=bfm_front_199.npz',
           f'--config.dataset.manual_dir={data}', f'--config.dataset.data_dir={tmp_path}/tfds',
           f'--config.eval_datasets.aflw_lfpa.vertex_file={tmp_path}/lfpa_34_vertices.npy',
           '--config.batch_size=2', '--config.eval_batch_size=2', '--config.log_every_steps=1',
           '--config.eval_every_steps=2', '--config.checkpoint_every_steps=2',
           '--config.image_every_steps=0', '--config.async_checkpointing=False']
  out = _run(train + ['--config.num_train_steps=2'], env, cwd)
  # Both evaluation datasets, at step 2 (eval) and at the end (test), with their own point counts.
  for kind in ('eval', 'test'):
    assert re.search(rf'{kind} \(aflw2000_3d, 4 images, 68 points\) step 2: NME [\d.]+%  0_30 '
                     rf'[\d.]+%  30_60 [\d.]+%  60_90 [\d.]+%', out), out
    assert re.search(rf'{kind} \(aflw_lfpa, 3 images, 34 points\) step 2: NME [\d.]+%', out), out
  # 300W-LP (8 without the flipped twins) and CelebA (6) interleaved: 14 // 2 = 7 steps per epoch.
  assert '(7 per epoch' in out, out
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']
  final = json.loads((workdir / 'final_metrics.json').read_text())
  assert set(final['test_datasets']) == {'aflw2000_3d', 'aflw_lfpa'}
  a2000 = final['test_datasets']['aflw2000_3d']
  assert a2000['num_images'] == 4 and a2000['count_yaw_0_30'] == 2
  assert a2000['count_yaw_30_60'] == 1 and a2000['count_yaw_60_90'] == 1

  # 3. Resume: the same command with more steps continues from the saved step and data position.
  out = _run(train + ['--config.num_train_steps=3'], env, cwd)
  assert 'resumed from step 2 (data position 4)' in out, out
  assert 'step 3/3' in out
  assert '3' in os.listdir(workdir / 'checkpoints')
  # The trained 3DMM layer is still the converted PCA basis (read with numpy from the .npz): with
  # the paper's Adam at scale 1.0 on entries of ~1e-3, the first step alone moved a median entry by
  # more than its size (configs/paper.py, decoder_lr_scale).
  with np.load(tmp_path / 'bfm_front_199.npz') as bfm:
    bases = {'FC_shape': bfm['shape_basis'].T, 'FC_texture': bfm['texture_basis'].T}
  _, variables = train_lib.load_for_inference(workdir)
  layer = variables['params']['decoder']['morphable_model']
  for name, basis in bases.items():
    trained = np.asarray(layer[name])
    change = np.median(np.abs(trained - basis)) / np.median(np.abs(basis))
    assert trained.shape == basis.shape and change < 0.05, (name, change)

  # 4. Evaluate (docs/evaluation.md): the config's test datasets by default.
  out = _run(['facernet_jax.evaluate', f'--workdir={workdir}'], env, cwd)
  table = out[out.index('Table 2 layout'):]
  row = re.search(r'^aflw2000_3d\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+-\s+4 '
                  r'\(2/1/1\)', table, re.M)
  assert row, table
  assert re.search(r'^aflw_lfpa \(34 points\)', table, re.M), table
  assert 'Table 3 layout' in table and re.search(r'^aflw2000_3d\s+[\d.]+\s+[\d.]+\s+[\d.]+$',
                                                 table[table.index('Table 3'):], re.M)
  assert 'Tables 5-7 layout (SIDE, MAD; Eqs 20-21): not computed' in table
  written = os.listdir(workdir / 'eval')
  assert {'tables.txt', 'results.json', 'ced_aflw2000_3d.png', 'ced_aflw_lfpa.png'} <= set(written)
  results = json.loads((workdir / 'eval' / 'results.json').read_text())['benchmarks']
  assert [r['name'] for r in results] == ['aflw2000_3d', 'aflw_lfpa']
  assert [r['count'] for r in results] == [4, 3]
