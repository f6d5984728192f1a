"""Exported ONNX / LiteRT files against the JAX model (facernet_jax.deploy), and the export CLI."""
import importlib.metadata
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from facernet_jax import models
from facernet_jax.configs import default as default_config
from facernet_jax.configs import paper as paper_config

onnx = pytest.importorskip('onnx', reason='ONNX export needs the deploy extra (docs/deploy.md)')
pytest.importorskip('onnxruntime', reason='ONNX export needs the deploy extra (docs/deploy.md)')
pytest.importorskip('jax2onnx', reason='pip install --no-deps jax2onnx==0.17.1 (docs/deploy.md)')

from facernet_jax import deploy  # noqa: E402
from facernet_jax.deploy import __main__ as cli  # noqa: E402
from facernet_jax.deploy import onnx_export  # noqa: E402


def _config(kind, size):
  if kind == 'paper':
    config = paper_config.get_config()
  else:
    config = default_config.get_config()
    if kind == 'mobilenetv2':
      config.model = ml_collections.ConfigDict({'name': 'mobilenetv2'})
  config.image_size = size
  return config


def _variables(config, seed=0):
  """Random weights and non-trivial BatchNorm statistics, so folding BN into the convs is tested."""
  net = deploy.graph.network_from_config(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 3))
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      return rng.normal(0, np.sqrt(1.0 / np.prod(s.shape[:-1])), s.shape).astype(np.float32)
    if "'var'" in name:
      return rng.uniform(0.5, 2.0, s.shape).astype(np.float32)
    if "'scale'" in name:
      return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
    return rng.normal(0, 0.1, s.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _jax_reference(config, variables, images):
  """The JAX model as training and `reconstruct` build it (depthwise 'auto': shifted on CPU)."""
  kwargs = {k: v for k, v in config.model.to_dict().items() if k not in ('name', 'depthwise')}
  if 'output_scales' in kwargs:
    kwargs['output_scales'] = tuple(sorted(kwargs['output_scales'].items()))
  net = models.create_model(config.model.name, **kwargs)
  return np.asarray(jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, images))


def _assert_close(out, ref):
  np.testing.assert_allclose(out, ref, rtol=cli.RTOL, atol=cli.ATOL)


@pytest.mark.parametrize('kind', ['paper', 'default', 'mobilenetv2'])
@pytest.mark.parametrize('size', [64, 120])
def test_onnx_export_equals_jax(kind, size, tmp_path):
  config = _config(kind, size)
  variables = _variables(config)
  path = str(tmp_path / 'model.onnx')
  model, info = deploy.export_onnx(config, variables, path)
  ops = onnx_export.op_counts(model)
  assert 'BatchNormalization' not in ops and 'Max' not in ops and 'Min' not in ops  # folded; ReLU6 = Clip
  assert ops['Clip'] >= 17  # every ReLU6 of the inverted residuals (17 blocks) is one Clip
  dims = model.graph.input[0].type.tensor_type.shape.dim
  assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [size, size, 3]  # dynamic batch
  assert os.path.isfile(path + '.json') and deploy.read_sidecar(path)['image_size'] == size
  images = np.random.default_rng(1).random((3, size, size, 3), dtype=np.float32)
  runner = deploy.OnnxRunner(path, threads=1)
  ref = _jax_reference(config, variables, images)
  _assert_close(runner(images), ref)
  _assert_close(runner(images[:1]), ref[:1])  # another batch size through the same file


def test_uint8_input_and_fixed_batch(tmp_path):
  config = _config('mobilenetv2', 64)
  variables = _variables(config, seed=2)
  path = str(tmp_path / 'u8.onnx')
  model, info = deploy.export_onnx(config, variables, path, batch=2, input_dtype='uint8')
  assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 64, 64, 3]
  assert info['input']['dtype'] == 'uint8' and info['input']['range'] == [0, 255]
  images = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  runner = deploy.OnnxRunner(path)
  ref = _jax_reference(config, variables, images.astype(np.float32) / 255.0)
  _assert_close(runner(images), ref)  # 3 images through a batch-2 file: chunked and padded
  with pytest.raises(ValueError, match='uint8'):
    runner(images.astype(np.float32))
  with pytest.raises(ValueError, match=r'\(B, 64, 64, 3\)'):
    runner(images[:, :32])


def test_sidecar_layout_is_the_coefficient_split(tmp_path):
  config = _config('mobilenetv2', 64)
  _, info = deploy.export_onnx(config, _variables(config), None)
  layout = {e['name']: (e['start'], e['stop']) for e in info['output']['layout']}
  assert layout == {'shape': (0, 199), 'texture': (199, 398), 'expression': (398, 462),
                    'rotation': (462, 465), 'translation': (465, 468), 'lighting': (468, 495)}
  assert info['config']['model']['name'] == 'mobilenetv2' and info['input']['layout'] == 'NHWC'
  json.dumps(info)  # plain JSON


def test_export_refuses_bad_options():
  config = _config('default', 64)
  variables = {'params': {}, 'batch_stats': {}}
  with pytest.raises(ValueError, match='appearance branch'):
    deploy.export_onnx(config, variables, image_size=120)
  with pytest.raises(ValueError, match='opset must be >= 18'):
    deploy.export_onnx(config, variables, opset=17)


@pytest.mark.parametrize('kind,size', [('paper', 64), ('default', 120), ('mobilenetv2', 120)])
def test_tflite_export_equals_jax(kind, size, tmp_path):
  config = _config(kind, size)
  variables = _variables(config, seed=4)
  path = str(tmp_path / 'model.tflite')
  deploy.export_tflite(config, variables, path)
  runner = deploy.TFLiteRunner(path)
  ops = {d['op_name'] for d in runner.interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert not any('FLEX' in o or 'CUSTOM' in o for o in ops), ops  # built-in ops only
  images = np.random.default_rng(5).random((2, size, size, 3), dtype=np.float32)
  _assert_close(runner(images), _jax_reference(config, variables, images))


def test_cli_exports_a_checkpoint_and_checks_it(tmp_path, capsys):
  from facernet_jax.demo_checkpoint import make_demo_checkpoint
  workdir = make_demo_checkpoint(str(tmp_path / 'wd'))
  out = str(tmp_path / 'm.onnx')
  assert cli.main(['--workdir', workdir, '--out', out]) == 0
  text = capsys.readouterr().out
  assert 'within rtol' in text and os.path.isfile(out + '.json')
  assert cli.main(['--workdir', str(tmp_path / 'nope'), '--out', out]) == 2
  assert cli.main(['--workdir', workdir, '--out', str(tmp_path / 'missing' / 'm.onnx')]) == 2
  assert 'does not exist' in capsys.readouterr().err


def test_exporter_installed_without_breaking_the_training_stack():
  """The documented install (`pip install --no-deps jax2onnx==...`) leaves the pinned orbax in place."""
  pyproject = open(os.path.join(os.path.dirname(__file__), '..', 'pyproject.toml')).read()
  assert f'"orbax-checkpoint=={importlib.metadata.version("orbax-checkpoint")}"' in pyproject
  assert importlib.metadata.version('jax2onnx') == onnx_export.JAX2ONNX_VERSION
  for dist in ('onnx', 'onnx-ir', 'onnxruntime'):
    assert f'"{dist}=={importlib.metadata.version(dist)}"' in pyproject


# --- reconstruct --backend onnx ---------------------------------------------------------------

@pytest.fixture(scope='module')
def random_checkpoint(tmp_path_factory):
  """(workdir, config, variables): the demo checkpoint with random network weights, saved through
  the training checkpoint path."""
  from facernet_jax import train
  from facernet_jax.demo_checkpoint import make_demo_checkpoint
  demo = make_demo_checkpoint(str(tmp_path_factory.mktemp('demo')))
  config, variables = train.load_for_inference(demo)
  net = _variables(config, seed=7)
  variables = {'params': dict(variables['params'], network=net['params']),
               'batch_stats': net['batch_stats']}
  workdir = str(tmp_path_factory.mktemp('random'))
  manager = train.checkpoint_manager(workdir, config)
  train.write_config(workdir, config)
  train.save_checkpoint(manager, dict(variables, step=np.int32(0)), config, force=True)
  manager.wait_until_finished()
  manager.close()
  return workdir, config, variables


def test_reconstructor_onnx_backend_equals_jax(random_checkpoint):
  from facernet_jax import inference
  _, config, variables = random_checkpoint
  rec_jax = inference.Reconstructor(config, variables, batch_size=4, render_size=32)
  rec_onnx = inference.Reconstructor(config, variables, batch_size=4, render_size=32, backend='onnx')
  assert rec_onnx.runner is not None and rec_jax.runner is None
  crops = np.random.default_rng(8).random((3, config.image_size, config.image_size, 3), dtype=np.float32)
  c_jax, c_onnx = rec_jax.regress(crops), rec_onnx.regress(crops)
  assert np.abs(c_jax).max() > 1e-3  # random weights: a non-trivial output
  _assert_close(c_onnx, c_jax)
  d_jax, d_onnx = rec_jax.decode(c_jax), rec_onnx.decode(c_onnx)
  np.testing.assert_allclose(d_onnx['landmarks_crop'], d_jax['landmarks_crop'], atol=1e-2)  # pixels
  np.testing.assert_allclose(d_onnx['vertices'], d_jax['vertices'], atol=1e-4)


def test_reconstruct_cli_onnx_backend(random_checkpoint, tmp_path):
  import cv2
  from facernet_jax import reconstruct
  workdir, _, _ = random_checkpoint
  photo = str(tmp_path / 'face.png')
  cv2.imwrite(photo, (np.random.default_rng(9).random((48, 40, 3)) * 255).astype(np.uint8))
  common = [photo, '--detector', 'none', '--render-size', '32', '--texture-size', '16', '--quiet']
  assert reconstruct.main(['--workdir', workdir, '--out', str(tmp_path / 'jax')] + common) == 0
  exported = str(tmp_path / 'net.onnx')
  assert cli.main(['--workdir', workdir, '--out', exported, '--no-check']) == 0
  for name, extra in (('mem', []), ('file', ['--onnx', exported])):
    out = tmp_path / name
    assert reconstruct.main(['--workdir', workdir, '--out', str(out), '--backend', 'onnx'] + extra + common) == 0
    a = np.load(next((tmp_path / 'jax').glob('*coefficients.npz')))
    b = np.load(next(out.glob('*coefficients.npz')))
    for key in a.files:
      np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-4)
  other = str(tmp_path / 'other.onnx')
  config = _config('mobilenetv2', 64)
  deploy.export_onnx(config, _variables(config), other)
  assert reconstruct.main(['--workdir', workdir, '--out', str(tmp_path / 'x'), '--backend', 'onnx',
                           '--onnx', other] + common) == 2
