"""Tests of the `nme` protocol tool (python -m facernet_jax.evaluate nme) and the benchmark helpers."""
import json
import subprocess
import sys

import numpy as np
import pytest

from facernet_jax import evaluate
from facernet_jax import metrics


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
