"""The end of the main job (facernet_jax.report): the report files and the closing lines."""
import contextlib
import io
import json

import cv2
import numpy as np
import pytest

from facernet_jax import report
from facernet_jax import run_report
from facernet_jax.configs import default
from facernet_jax.configs import test as test_config
from tests.conftest import SHARED_DATA


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """configs/test.py trained for 2 steps with the report on, as the CLI's main job runs it."""
  from facernet_jax import train
  tmp = tmp_path_factory.mktemp('report_run')
  config = test_config.get_config()
  config.report = True
  config.dataset.data_dir = str(tmp / 'tfds')
  config.num_train_steps, config.eval_every_steps, config.image_every_steps = 2, 0, 0  # fewer compiles
  workdir = tmp / 'run'
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    train.train_and_evaluate(config, str(workdir))
  return config, workdir, out.getvalue()


@pytest.mark.slow
def test_end_of_training_writes_the_report_and_an_honest_ending(tiny_run):
  config, workdir, printed = tiny_run
  for name in ('report.png', 'report.html', 'report.json'):
    assert (workdir / name).is_file(), name
  picture = cv2.imread(str(workdir / 'report.png'))
  assert picture is not None and picture.shape[0] > 500 and picture.shape[1] > 500
  saved = json.loads((workdir / 'report.json').read_text())
  final = json.loads((workdir / 'final_metrics.json').read_text())['test']
  # The report's own pass over the test split agrees with training's evaluation (train.evaluate).
  for key in ('nme', 'psnr', 'ssim', 'num_images'):
    assert saved['metrics']['trained'][key] == pytest.approx(final[key], rel=1e-4, abs=1e-4), key
  assert saved['metrics']['mean_face']['num_images'] == saved['metrics']['untrained']['num_images'] == 8
  # Two steps learn nothing: the mean face at the true position and size beats both networks.
  assert saved['metrics']['mean_face']['nme'] < min(saved['metrics']['trained']['nme'],
                                                   saved['metrics']['untrained']['nme'])
  assert 'references on the same images: mean face at the true position and size NME' in printed
  assert 'FAIL' not in printed and 'NME <= 3.5 % not reached' in printed
  assert 'differs from configs/default.py' in printed and 'report.png' in printed
  if SHARED_DATA.is_dir():
    assert len(saved['real_photos']) == len(run_report.REAL_PHOTOS) and saved['real_photos_note'] is None
  html = (workdir / 'report.html').read_text()
  assert '<img src="report.png"' in html and 'mean face at the true position and size' in html


@pytest.mark.slow
def test_standalone_cli_and_missing_real_photos(tiny_run, tmp_path, capsys):
  _, workdir, _ = tiny_run
  missing = tmp_path / 'no_shared'
  assert report.main(['--workdir', str(workdir), '--shared_data', str(missing), '--max_images', '3']) == 0
  out = capsys.readouterr().out
  assert f'no real photos: {missing / "faces68"} does not exist' in out
  saved = json.loads((workdir / 'report.json').read_text())
  assert saved['real_photos'] == {} and saved['metrics']['trained']['num_images'] == 3
  assert report.main(['--workdir', str(tmp_path / 'nothing')]) == 2
  assert 'does not exist (train first' in capsys.readouterr().err


def test_read_scalars_reads_clu_event_files(tmp_path):
  from clu import metric_writers
  writer = metric_writers.create_default_writer(str(tmp_path), asynchronous=False)
  writer.write_scalars(1, {'train/loss': 2.5, 'eval/nme': 9.0})
  writer.write_scalars(3, {'train/loss': 1.25})
  writer.write_images(3, {'images/input': np.zeros((1, 4, 4, 3), np.float32)})
  writer.close()
  scalars = run_report.read_scalars(str(tmp_path))
  assert set(scalars) == {'train/loss', 'eval/nme'}
  np.testing.assert_array_equal(scalars['train/loss'][0], [1, 3])
  np.testing.assert_allclose(scalars['train/loss'][1], [2.5, 1.25])
  np.testing.assert_allclose(scalars['eval/nme'][1], [9.0])


def test_mean_face_at_true_position_fits_position_and_size():
  """The coefficients' landmarks, projected by the decoder (jax, independent of the numpy fixed point),
  have the given landmarks' centroid and least-squares scale 1 about it."""
  import jax.numpy as jnp
  from facernet_jax import forward
  from facernet_jax.face_model import build_synthetic_model
  model = build_synthetic_model(12, 0)
  size = 32
  decoder = forward.FaceDecoder(face_model=model, image_size=size, trainable_bases=False)
  rng = np.random.default_rng(0)
  base = np.asarray(decoder.apply({}, jnp.zeros((1, 495)))['landmarks'], np.float64)[0]
  # Targets: the frontal mean face's landmarks moved, scaled and jittered.
  gt = (16 + (base - 16)[None] * rng.uniform(0.7, 1.3, (5, 1, 1)) + rng.uniform(-4, 4, (5, 1, 2))
        + rng.normal(0, 0.3, (5, 68, 2)))
  coefficients = run_report.mean_face_at_true_position(model, gt, size)
  lm = np.asarray(decoder.apply({}, jnp.asarray(coefficients))['landmarks'], np.float64)
  np.testing.assert_allclose(lm.mean(1), gt.mean(1), atol=0.02)
  dp, dg = lm - lm.mean(1, keepdims=True), gt - gt.mean(1, keepdims=True)
  np.testing.assert_allclose(np.sum(dp * dg, (1, 2)) / np.sum(dp * dp, (1, 2)), 1.0, atol=2e-3)
  c = coefficients.copy()
  c[:, 465:468] = 0
  assert not c.any()  # only the translation is set: mean face, frontal, ambient light


def test_is_unchanged_default():
  config = default.get_config()
  assert run_report.is_unchanged_default(config)
  config.dataset.data_dir = '/tmp/elsewhere'
  config.report = False
  config.seed = 3  # another draw from the documented spread over seeds
  assert run_report.is_unchanged_default(config)
  # The config as the workdir's config.json holds it (lists for tuples and so on).
  import ml_collections
  assert run_report.is_unchanged_default(ml_collections.ConfigDict(json.loads(config.to_json())))
  config.num_train_steps = 20
  assert not run_report.is_unchanged_default(config)
  assert not run_report.is_unchanged_default(test_config.get_config())
