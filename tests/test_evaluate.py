"""Tests of the `nme` protocol tool (python -m facernet_jax.evaluate nme) and the benchmark helpers."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facernet_jax import benchmark_outputs
from facernet_jax import evaluate
from facernet_jax.configs import test as test_config
from facernet_jax.data import synthetic_faces


def _hand_case():
  """Three images, 68 points in a 10 x 10 box, prediction off by (3, 4) = 5 px (NME 0.5), 0 and 1 px."""
  rng = np.random.default_rng(0)
  gt = rng.uniform(0, 10, (3, 68, 2))
  gt[:, :4] = [[0, 0], [10, 0], [0, 10], [10, 10]]
  pred = gt.copy()
  pred[0] += [3, 4]
  pred[2] += [0, 1]
  return pred, gt, np.array([5.0, -40.0, 75.0]), np.array([0.5, 0.0, 0.1])


def test_nme_cli_layouts_and_outputs(tmp_path, capsys):
  pred, gt, yaw, expected = _hand_case()
  np.save(tmp_path / 'pred.npy', pred.astype(np.float32))  # (n, 68, 2)
  np.save(tmp_path / 'gt.npy', np.concatenate([np.swapaxes(gt, 1, 2), np.ones((3, 1, 68))], 1))  # (n, 3, 68)
  np.save(tmp_path / 'yaw.npy', yaw)
  rc = evaluate.main(['nme', '--pred', str(tmp_path / 'pred.npy'), '--gt', str(tmp_path / 'gt.npy'),
                      '--yaw', str(tmp_path / 'yaw.npy'), '--csv', str(tmp_path / 'o.csv'),
                      '--json', str(tmp_path / 'o.json'), '--ced', str(tmp_path / 'ced.png'), '--name', 'hand'])
  assert rc == 0
  out = capsys.readouterr().out
  assert 'hand' in out and '50.00' in out and '20.00' in out  # bin I = 50 %, mean of bins (50+0+10)/3
  summary = json.loads((tmp_path / 'o.json').read_text())
  assert [b['count'] for b in summary['bins']] == [1, 1, 1]
  np.testing.assert_allclose([b['nme'] for b in summary['bins']], 100 * expected, atol=1e-4)
  np.testing.assert_allclose(summary['mean_of_bins'], 20.0, atol=1e-4)
  np.testing.assert_allclose(summary['mean'], 20.0, atol=1e-4)
  rows = (tmp_path / 'o.csv').read_text().strip().splitlines()
  assert rows[0].startswith('index,nme') and len(rows) == 4
  np.testing.assert_allclose([float(r.split(',')[1]) for r in rows[1:]], expected, atol=1e-6)
  assert (tmp_path / 'ced.png').read_bytes()[:4] == b'\x89PNG'


def test_nme_cli_3ddfa_layout_equals_points_last(tmp_path):
  pred, gt, _, expected = _hand_case()
  np.save(tmp_path / 'a.npy', np.swapaxes(pred, 1, 2))  # (n, 2, 68)
  np.save(tmp_path / 'b.npy', gt)
  a = evaluate.load_landmark_array(tmp_path / 'a.npy')
  b = evaluate.load_landmark_array(tmp_path / 'b.npy')
  nme, table = evaluate.score_landmarks(a, b)
  np.testing.assert_allclose(nme, expected)
  assert table.count == 3 and np.isnan(table.mean_of_bins)
  # --pred-shift moves every prediction: a shift of (3, 4)-sized error on the perfect image.
  nme_s, _ = evaluate.score_landmarks(b, b, pred_shift=0.5)
  np.testing.assert_allclose(nme_s, np.sqrt(0.5) / 10)


@pytest.mark.parametrize('make, message', [
    (lambda p: np.save(p, np.array([{'a': 1}], dtype=object)), 'pickle'),
    (lambda p: np.save(p, np.zeros((4, 5, 6))), 'shape (4, 5, 6)'),
    (lambda p: np.save(p, np.zeros((4, 3, 2))), 'ambiguous'),
    (lambda p: np.save(p, np.full((2, 68, 2), np.nan)), 'NaN'),
    (lambda p: p.write_bytes(b'not a numpy file'), 'not a readable'),
    (lambda p: None, 'does not exist'),
])
def test_nme_cli_bad_prediction_files(tmp_path, capsys, make, message):
  _, gt, _, _ = _hand_case()
  np.save(tmp_path / 'gt.npy', gt)
  bad = tmp_path / 'bad.npy'
  make(bad)
  rc = evaluate.main(['nme', '--pred', str(bad), '--gt', str(tmp_path / 'gt.npy')])
  err = capsys.readouterr().err
  assert rc == 2
  assert message in err and 'bad.npy' in err


def test_nme_cli_mismatches(tmp_path, capsys):
  pred, gt, _, _ = _hand_case()
  np.save(tmp_path / 'p.npy', pred[:2])
  np.save(tmp_path / 'g.npy', gt)
  np.save(tmp_path / 'y.npy', np.zeros(5))
  assert evaluate.main(['nme', '--pred', str(tmp_path / 'p.npy'), '--gt', str(tmp_path / 'g.npy')]) == 2
  assert 'differ' in capsys.readouterr().err
  np.save(tmp_path / 'p.npy', pred)
  assert evaluate.main(['nme', '--pred', str(tmp_path / 'p.npy'), '--gt', str(tmp_path / 'g.npy'),
                        '--yaw', str(tmp_path / 'y.npy')]) == 2
  err = capsys.readouterr().err
  assert 'y.npy' in err and '5 values' in err and '3 images' in err
  flat = gt.copy()
  flat[1, :, 1] = 3.0  # zero-height box
  np.save(tmp_path / 'g.npy', flat)
  assert evaluate.main(['nme', '--pred', str(tmp_path / 'p.npy'), '--gt', str(tmp_path / 'g.npy')]) == 2
  assert 'zero area' in capsys.readouterr().err


def test_nme_cli_on_3ddfa_arrays_subprocess(shared_data, tmp_path):
  """The command line on 3DDFA's own files: ground truth against itself is 0, original vs re-annotated
  matches a brute-force loop, bin counts add to 2000."""
  d = shared_data / 'aflw2000_3d_protocol'
  ori, re = d / 'AFLW2000-3D.pts68.npy', d / 'AFLW2000-3D-Reannotated.pts68.npy'
  out = subprocess.run([sys.executable, '-m', 'facernet_jax.evaluate', 'nme', '--pred', str(ori), '--gt', str(re),
                        '--yaw', str(d / 'AFLW2000-3D.pose.npy'), '--json', str(tmp_path / 's.json')],
                       capture_output=True, text=True, check=True)
  assert '2000 (1312/383/305)' in out.stdout
  s = json.loads((tmp_path / 's.json').read_text())
  assert sum(b['count'] for b in s['bins']) == 2000
  o, r = np.load(ori).astype(np.float64), np.load(re).astype(np.float64)
  brute = []
  for i in range(2000):
    w = r[i, 0].max() - r[i, 0].min()
    h = r[i, 1].max() - r[i, 1].min()
    brute.append(np.mean(np.hypot(*(o[i, :2] - r[i]))) / np.sqrt(w * h))
  np.testing.assert_allclose(s['mean'], 100 * np.mean(brute), rtol=1e-9)
  nme, table = evaluate.score_landmarks(evaluate.load_landmark_array(re), evaluate.load_landmark_array(re),
                                        np.load(d / 'AFLW2000-3D.pose.npy'))
  assert np.all(nme == 0) and table.mean_of_bins == 0 and sum(table.bin_counts) == 2000


# ----------------------------------------------------------------------------- benchmarks on a demo model

@pytest.fixture(scope='module')
def demo_workdir(tmp_path_factory):
  from facernet_jax import reconstruct
  path = tmp_path_factory.mktemp('demo_model')
  c = np.zeros(495, np.float32)
  c[463] = np.radians(-25.0)
  reconstruct.make_demo_checkpoint(str(path), coefficients=c)
  return str(path)


def test_benchmarks_synthetic_and_aflw2000(demo_workdir, shared_data, tmp_path, capsys):
  """Synthetic split and AFLW2000-3D (the 16 real images of faces68, linked into a temporary folder
  with their .mat files). The saved predictions, scored by the `nme` tool against 3DDFA's own arrays
  (rows matched by the benchmark), give the benchmark's numbers: the pixel conventions agree."""
  aflw = tmp_path / 'AFLW2000'
  aflw.mkdir()
  for f in (shared_data / 'faces68' / 'images').glob('image0*'):
    (aflw / f.name).symlink_to(f)
  proto = shared_data / 'aflw2000_3d_protocol'
  out = tmp_path / 'eval'
  rc = evaluate.main(['--workdir', demo_workdir, '--benchmarks', 'synthetic,aflw2000_3d', '--aflw2000', str(aflw),
                      '--protocol-dir', str(proto), '--max-examples', '8', '--out', str(out), '--batch-size', '8'])
  assert rc == 0
  text = capsys.readouterr().out
  assert 'Table 2 layout' in text and 'Table 3 layout' in text and 'SIDE' in text
  res = {r['name']: r for r in json.loads((out / 'results.json').read_text())['benchmarks']}
  syn, real = res['synthetic'], res['aflw2000_3d']
  assert syn['count'] == 8 and real['count'] == 8
  assert sum(b['count'] for b in real['nme']['bins']) == 8
  for key in ('l1', 'psnr', 'ssim', 'side', 'mad', 'dense_nme'):
    assert np.isfinite(syn[key]), key
  assert 0 < syn['ssim'] < 1 and syn['side'] > 0 and 0 < syn['mad'] < 90
  # NME against a brute-force computation: the demo model's known landmarks (an independent numpy
  # projection) against the synthetic test split's ground truth.
  data = synthetic_faces.generate_examples(synthetic_faces.config_from_training(test_config.get_config()),
                                           'test', 0, 8)
  lm_pred, _ = _demo_landmarks_crop(-25.0)
  brute = [np.mean(np.linalg.norm(lm_pred - g, axis=1)) / np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1]))
           for g in np.asarray(data['landmarks'], np.float64)]
  np.testing.assert_allclose([r['nme'] for r in syn['per_image']], brute, rtol=1e-4)
  np.testing.assert_allclose(syn['nme']['mean'], 100 * np.mean(brute), rtol=1e-4)
  assert (out / 'ced_synthetic.png').read_bytes()[:4] == b'\x89PNG'
  assert (out / 'ced_aflw2000_3d.png').is_file() and (out / 'tables.txt').is_file()
  pred = np.load(out / 'aflw2000_3d_pred.pts68.npy')
  assert pred.shape == (8, 2, 68)
  rows = [r['protocol_row'] for r in real['per_image']]
  assert min(rows) >= 0
  np.save(tmp_path / 'gt_ori.npy', np.load(proto / 'AFLW2000-3D.pts68.npy')[rows])
  np.save(tmp_path / 'gt_re.npy', np.load(proto / 'AFLW2000-3D-Reannotated.pts68.npy')[rows])
  np.save(tmp_path / 'pred.npy', pred)
  for gt, shift, key in (('gt_ori.npy', 0.5, 'nme'), ('gt_re.npy', -0.5, 'nme_reannotated')):
    assert evaluate.main(['nme', '--pred', str(tmp_path / 'pred.npy'), '--gt', str(tmp_path / gt),
                          '--pred-shift', str(shift), '--json', str(tmp_path / 's.json')]) == 0
    s = json.loads((tmp_path / 's.json').read_text())
    np.testing.assert_allclose(s['mean'], real[key]['mean'], rtol=1e-4)


def test_benchmark_errors(tmp_path, capsys):
  assert evaluate.main(['--workdir', str(tmp_path / 'none')]) == 2
  assert 'does not exist' in capsys.readouterr().err


def _demo_landmarks_crop(yaw_degrees, image_size=32):
  """Independent numpy projection of the demo model's fixed landmarks (test config, docs/architecture.md)."""
  from facernet_jax import face_model
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  v = model.mean_shape[model.landmark_indices].astype(np.float64)
  a = np.radians(yaw_degrees)
  vc = v @ np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]).T
  f, d = 1015.0 * image_size / 224.0, 10.0 - vc[:, 2]
  return np.stack([f * vc[:, 0] / d + image_size / 2, image_size / 2 - f * vc[:, 1] / d], 1), model


def test_benchmark_lfpa_34_points(demo_workdir, shared_data, tmp_path, capsys):
  """A small AFLW-LFPA-format folder (34 of the 68 AFLW2000 points, some invisible) scored against a
  brute-force computation of the visibility-masked NME of the demo model's known predictions."""
  import scipy.io
  sel = np.arange(0, 68, 2)  # 34 points
  crop_pts, model = _demo_landmarks_crop(-25.0)
  root = tmp_path / 'AFLW_LFPA' / 'test'
  root.mkdir(parents=True)
  expected = []
  for k, name in enumerate(['image00050', 'image00081', 'image00430']):
    pts = scipy.io.loadmat(shared_data / 'faces68' / 'images' / f'{name}.mat')['pt3d_68'][:2, sel]  # 1-based
    vis = np.ones(34, bool)
    vis[k:k + 3] = False
    scipy.io.savemat(root / f'{name}.mat', {'pt2d': pts, 'visibility': vis.astype(np.uint8)})
    (root / f'{name}.jpg').symlink_to(shared_data / 'faces68' / 'images' / f'{name}.jpg')
    gt = pts.T - 0.5  # continuous pixels
    g = gt[vis]
    side = np.sqrt(2) * max(np.ptp(g[:, 0]), np.ptp(g[:, 1]))
    x0 = (g.min(0) + g.max(0)) / 2 - side / 2
    pred = x0 + crop_pts[sel] * side / 32
    err = np.mean([np.linalg.norm(pred[i] - gt[i]) for i in range(34) if vis[i]])
    expected.append(err / np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1])))
  np.save(tmp_path / 'lfpa_points.npy', np.asarray(model.landmark_indices)[sel])
  out = tmp_path / 'eval'
  assert evaluate.main(['--workdir', demo_workdir, '--benchmarks', 'aflw_lfpa', '--lfpa', str(tmp_path / 'AFLW_LFPA'),
                        '--lfpa-points', str(tmp_path / 'lfpa_points.npy'), '--out', str(out),
                        '--batch-size', '8']) == 0
  assert 'aflw_lfpa (34 points)' in capsys.readouterr().out
  res = json.loads((out / 'results.json').read_text())['benchmarks'][0]
  np.testing.assert_allclose([r['nme'] for r in res['per_image']], expected, rtol=1e-4)
  np.save(tmp_path / 'bad.npy', np.arange(10))
  assert evaluate.main(['--workdir', demo_workdir, '--benchmarks', 'aflw_lfpa', '--lfpa', str(tmp_path / 'AFLW_LFPA'),
                        '--lfpa-points', str(tmp_path / 'bad.npy'), '--out', str(out)]) == 2
  assert '34 vertex indices' in capsys.readouterr().err


def test_nme_cli_visibility_34_points(tmp_path, capsys):
  rng = np.random.default_rng(5)
  gt = rng.uniform(0, 50, (4, 34, 2))
  pred = gt + rng.normal(0, 1, gt.shape)
  vis = rng.uniform(size=(4, 34)) > 0.3
  pred[~vis] += 100.0  # invisible points must not count
  np.save(tmp_path / 'p.npy', pred)
  np.save(tmp_path / 'g.npy', np.swapaxes(gt, 1, 2))  # (n, 2, 34)
  np.save(tmp_path / 'v.npy', vis)
  assert evaluate.main(['nme', '--pred', str(tmp_path / 'p.npy'), '--gt', str(tmp_path / 'g.npy'),
                        '--visible', str(tmp_path / 'v.npy'), '--json', str(tmp_path / 's.json')]) == 0
  brute = []
  for i in range(4):
    g = gt[i][vis[i]]
    d = np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1]))
    brute.append(np.mean([np.linalg.norm(pred[i, k] - gt[i, k]) for k in range(34) if vis[i, k]]) / d)
  np.testing.assert_allclose(json.loads((tmp_path / 's.json').read_text())['mean'], 100 * np.mean(brute))
  assert '34 points' in capsys.readouterr().out
  np.save(tmp_path / 'v.npy', vis[:2])
  assert evaluate.main(['nme', '--pred', str(tmp_path / 'p.npy'), '--gt', str(tmp_path / 'g.npy'),
                        '--visible', str(tmp_path / 'v.npy')]) == 2
  assert 'expected (4, 34)' in capsys.readouterr().err


@pytest.mark.parametrize('make, what, message', [
    (lambda p: np.save(p, np.array([{'a': 1}], dtype=object)), 'yaw', 'pickle'),
    (lambda p: p.write_bytes(b'not a numpy file'), 'visibility', 'not a readable'),
    (lambda p: np.save(p, np.zeros(34, np.float32)), '--lfpa-points', 'integer vertex indices'),
    (lambda p: None, '--lfpa-points', 'does not exist'),
])
def test_every_npy_input_gets_a_clear_error(tmp_path, make, what, message):
  bad = tmp_path / 'bad.npy'
  make(bad)
  kinds = 'iu' if what == '--lfpa-points' else 'fiu'
  with pytest.raises(evaluate.InputError) as e:
    evaluate.read_npy(bad, what, kinds, 'integer vertex indices')
  assert message in str(e.value) and what in str(e.value) and 'bad.npy' in str(e.value)


def test_plot_ced_writes_png(tmp_path):
  path = tmp_path / 'ced.png'
  benchmark_outputs.plot_ced({'a': [0.01, 0.03], 'b': [0.02, 0.04]}, path)
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert cv2.imread(str(path)).shape == (400, 500, 3)  # figsize (5, 4) at 100 dpi
  assert not [p for p in tmp_path.iterdir() if p.name.startswith('.tmp-')]


def test_default_benchmarks_follow_the_config_and_a_bfm_model_gets_an_error(tmp_path, capsys,
                                                                            monkeypatch):
  """On a BFM model `synthetic` is an error (it used to exit 0 with an empty table and claim CED
  plots); `auto` (the default) takes the config's evaluation datasets, or errors when it has none."""
  import ml_collections
  from facernet_jax import benchmarks
  from facernet_jax import inference
  from facernet_jax.configs import default, paper
  bfm = default.get_config()
  bfm.face_model.source = str(tmp_path / 'bfm_front_199.npz')
  loaded = type('Loaded', (), {'config': bfm, 'variables': {}})
  monkeypatch.setattr(inference, 'load_model', lambda *a, **k: loaded)
  out = tmp_path / 'eval'
  for args in (['--benchmarks', 'synthetic'], []):
    assert evaluate.main(['--workdir', str(tmp_path), '--out', str(out)] + args) == 2
    err = capsys.readouterr().err
    assert 'bfm_front_199.npz' in err or 'names no evaluation datasets' in err, err
    assert not out.exists()  # nothing written
  # The paper config names AFLW2000-3D and AFLW-LFPA, with the folders training reads.
  c = ml_collections.ConfigDict(paper.get_config().to_dict())
  c.dataset.manual_dir = str(tmp_path / 'DATA')
  assert benchmarks.config_benchmarks(c) == ['aflw2000_3d', 'aflw_lfpa']
  assert benchmarks.config_folder(c, 'aflw2000_3d') == str(tmp_path / 'DATA' / 'AFLW2000')
  assert benchmarks.config_folder(c, 'aflw_lfpa') == str(tmp_path / 'DATA' / 'AFLW_LFPA')
  assert benchmarks.config_vertex_file(c) == 'lfpa_34_vertices.npy'
  assert benchmarks.config_benchmarks(default.get_config()) == ['synthetic']
