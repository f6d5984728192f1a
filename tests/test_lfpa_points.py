"""AFLW-LFPA: the 34-point vertex list command, the shared annotation reader, and evaluate's use of both."""
import json

import numpy as np
import pytest
import scipy.io

from facernet_jax import evaluate
from facernet_jax import face_model
from facernet_jax.data.real import aflw_lfpa
from facernet_jax.data.real import lfpa_points


def test_default_mapping_on_a_model_by_brute_force(tmp_path, capsys):
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  path = tmp_path / 'model.npz'
  model.save_npz(path)
  out = tmp_path / 'lfpa.npy'
  assert lfpa_points.main(['--model', str(path), '--out', str(out)]) == 0
  assert '19 of 34 LFPA points' in capsys.readouterr().out
  idx = np.load(out, allow_pickle=False)
  lmk, shape = np.asarray(model.landmark_indices), np.asarray(model.mean_shape, np.float64)
  # Coinciding points: the 68-point landmark vertices (iBUG: 17 brow corner, 30 nose tip, 8 chin, ...).
  for lfpa, i68 in ((0, 17), (2, 21), (5, 26), (6, 36), (11, 45), (13, 31), (14, 30), (17, 48), (20, 8)):
    assert idx[lfpa] == lmk[i68]
  # Eye centre: nearest vertex to the mean of the 6 eye landmarks, by brute force.
  target = shape[lmk[36:42]].mean(0)
  dists = [np.linalg.norm(v - target) for v in shape]
  assert idx[7] == int(np.argmin(dists))
  assert list(np.flatnonzero(idx < 0)) == [12, 16] + list(range(21, 34))  # ears, 13 additions


def test_mapping_file_round_trip_and_errors(tmp_path, capsys):
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  model.save_npz(tmp_path / 'model.npz')
  mapping = tmp_path / 'map.csv'
  assert lfpa_points.main(['--write-mapping', str(mapping)]) == 0
  text = mapping.read_text().replace('21,LFPA addition 1 (definition not available here),none',
                                     '21,my contour point,vertex:5')
  mapping.write_text(text)
  assert lfpa_points.main(['--model', str(tmp_path / 'model.npz'), '--mapping', str(mapping),
                           '--out', str(tmp_path / 'a.npy')]) == 0
  assert np.load(tmp_path / 'a.npy')[21] == 5
  mapping.write_text(text.replace('vertex:5', 'vertex:999999'))
  assert lfpa_points.main(['--model', str(tmp_path / 'model.npz'), '--mapping', str(mapping),
                           '--out', str(tmp_path / 'b.npy')]) == 2
  assert 'LFPA point 21 (my contour point): bad rule' in capsys.readouterr().err
  assert not (tmp_path / 'b.npy').exists()


def test_read_annotation_yaw_and_visibility_layouts():
  pts = np.arange(68, dtype=np.float64).reshape(2, 34) + 1.0  # 1-based MATLAB
  vis = (np.arange(34) % 3 > 0).astype(np.float64)
  p, v, yaw = aflw_lfpa.read_annotation({'pt2d': pts, 'Pose_Para': [[0.1, -0.5, 0, 0, 0, 0, 1]]})
  np.testing.assert_allclose(p, pts.T - 0.5)
  assert v.all() and yaw == pytest.approx(np.degrees(-0.5))
  _, _, yaw = aflw_lfpa.read_annotation({'pt2d': pts, 'yaw': 12.5, 'Pose_Para': [[0, 1.0, 0]]})
  assert yaw == 12.5  # an explicit yaw in degrees wins
  assert np.isnan(aflw_lfpa.read_annotation({'pt2d': pts.T})[2])
  # x; y; visibility as a third row (or column) when there is no visibility key.
  for arr in (np.vstack([pts, vis]), np.vstack([pts, vis]).T):
    p, v, _ = aflw_lfpa.read_annotation({'pt2d': arr})
    np.testing.assert_allclose(p, pts.T - 0.5)
    np.testing.assert_array_equal(v, vis > 0)
  with pytest.raises(ValueError, match='visibility has shape'):
    aflw_lfpa.read_annotation({'pt2d': pts, 'visibility': np.ones(30)})


def test_evaluate_reads_pose_para_and_skips_unmapped_points(tmp_path, shared_data, capsys):
  """Brute-force NME of the demo model's known landmark projection on 2 real faces whose LFPA-format
  .mat has only Pose_Para (radians); 3 of the 34 vertex entries are -1 (not scored, d unchanged)."""
  from facernet_jax import reconstruct  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'demo'
  c = np.zeros(495, np.float32)
  c[463] = np.radians(-25.0)
  reconstruct.make_demo_checkpoint(str(workdir), coefficients=c)
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  v = model.mean_shape[model.landmark_indices].astype(np.float64)
  a = np.radians(-25.0)
  vc = v @ np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]).T
  f, d = 1015.0 * 32 / 224.0, 10.0 - vc[:, 2]
  crop_pts = np.stack([f * vc[:, 0] / d + 16, 16 - f * vc[:, 1] / d], 1)
  sel = np.arange(0, 68, 2)
  idx = np.asarray(model.landmark_indices)[sel].astype(np.int64)
  idx[[4, 10, 20]] = -1
  np.save(tmp_path / 'lfpa.npy', idx)
  root = tmp_path / 'AFLW_LFPA' / 'test'
  root.mkdir(parents=True)
  expected, yaws = [], []
  for k, name in enumerate(['image00050', 'image00081']):
    m = scipy.io.loadmat(shared_data / 'faces68' / 'images' / f'{name}.mat')
    pts = m['pt3d_68'][:2, sel]
    vis = np.ones(34, bool)
    vis[k:k + 2] = False
    scipy.io.savemat(root / f'{name}.mat', {'pt2d': pts, 'visibility': vis.astype(np.uint8),
                                            'Pose_Para': m['Pose_Para']})
    (root / f'{name}.jpg').symlink_to(shared_data / 'faces68' / 'images' / f'{name}.jpg')
    gt = pts.T - 0.5
    g = gt[vis]
    side = np.sqrt(2) * max(np.ptp(g[:, 0]), np.ptp(g[:, 1]))
    pred = (g.min(0) + g.max(0)) / 2 - side / 2 + crop_pts[sel] * side / 32
    scored = [i for i in range(34) if vis[i] and idx[i] >= 0]
    err = np.mean([np.linalg.norm(pred[i] - gt[i]) for i in scored])
    expected.append(err / np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1])))
    yaws.append(np.degrees(m['Pose_Para'].ravel()[1]))
  out = tmp_path / 'eval'
  assert evaluate.main(['--workdir', str(workdir), '--benchmarks', 'aflw_lfpa', '--lfpa', str(tmp_path / 'AFLW_LFPA'),
                        '--lfpa-points', str(tmp_path / 'lfpa.npy'), '--out', str(out), '--batch-size', '8']) == 0
  capsys.readouterr()
  res = json.loads((out / 'results.json').read_text())['benchmarks'][0]
  np.testing.assert_allclose([r['nme'] for r in res['per_image']], expected, rtol=1e-4)
  np.testing.assert_allclose([r['yaw'] for r in res['per_image']], yaws, rtol=1e-6)
