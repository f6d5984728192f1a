"""Tests for facernet_jax.models against independent references (formulas, numpy, gradients)."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facernet_jax import models
from facernet_jax.models import layers
from facernet_jax.models.multiscale import MultiscaleFusion

EPS = 1e-5


# --- coefficient split (Eq 10, docs/architecture.md table) ---------------------------------

def test_split_coefficients_matches_contract_slices():
  x = np.arange(3 * 495, dtype=np.float32).reshape(3, 495)
  parts = models.split_coefficients(x)
  expected = {'shape': (0, 199), 'texture': (199, 398), 'expression': (398, 462),
              'rotation': (462, 465), 'translation': (465, 468), 'lighting': (468, 495)}
  assert list(parts) == list(expected) == list(models.COEFFICIENT_SIZES)
  for name, (a, b) in expected.items():
    np.testing.assert_array_equal(parts[name], x[:, a:b])
  np.testing.assert_array_equal(models.join_coefficients(parts), x)
  with pytest.raises(ValueError):
    models.split_coefficients(np.zeros((2, 494)))


def test_create_model_rejects_unknown_name():
  with pytest.raises(ValueError, match='resnet50'):
    models.create_model('vgg16')


# --- shapes of every variant (traced with eval_shape: no compilation) -----------------------

VARIANTS = [
    ('facernet', {}),
    ('facernet', dict(use_attention=False)),
    ('facernet', dict(use_multiscale=False)),
    ('facernet', dict(use_decoder=False)),
    ('facernet', dict(use_attention=False, use_multiscale=False, use_decoder=False, width=0.5)),
    ('facernet', dict(width=1.4, num_outputs=62, dilation=1, dtype=jnp.bfloat16)),
    ('mobilenetv2', {}),
    ('resnet50', {}),
    ('densenet121', dict(num_outputs=62)),
]


@pytest.mark.parametrize('name,kwargs', VARIANTS, ids=[f'{n}-{k}' for n, k in VARIANTS])
def test_output_shapes(name, kwargs):
  model = models.create_model(name, **kwargs)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  k = kwargs.get('num_outputs', 495)
  for size in (64, 120, 224):
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3)), train=False),
                         variables)
    assert out.shape == (2, k) and out.dtype == jnp.float32, (size, out)
  out, state = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((2, 120, 120, 3)), train=True, mutable=['batch_stats']),
      variables)
  assert out.shape == (2, k)
  assert jax.tree.structure(state['batch_stats']) == jax.tree.structure(variables['batch_stats'])


# --- parameter count of one inverted-residual block = formula -------------------------------

@pytest.mark.parametrize('c_in,c_out,t,s', [(32, 16, 1, 1), (16, 24, 6, 2), (24, 24, 6, 1), (160, 320, 6, 1)])
def test_inverted_residual_param_count(c_in, c_out, t, s):
  block = layers.InvertedResidual(c_out, s, t)
  v = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.zeros((1, 8, 8, c_in))))
  h = c_in * t
  expected = (c_in * h + 2 * h if t != 1 else 0) + 9 * h + 2 * h + h * c_out + 2 * c_out
  assert models.count_params(v['params']) == expected
  # running mean + var for every BN channel
  assert models.count_params(v['batch_stats']) == 2 * ((h if t != 1 else 0) + h + c_out)


def test_mobilenetv2_matches_reference_count():
  """Torchvision's mobilenet_v2 has 3,504,872 params with its 1280 -> 1000 classifier."""
  model = models.create_model('mobilenetv2', num_outputs=1000)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  assert models.count_params(v['params']) == 3_504_872


# --- receptive field of the multiscale module, measured by gradients (Sec 3.2, Eqs 7-8) ---

@pytest.mark.parametrize('dilation,size', [(3, 51), (1, 31)])
def test_multiscale_receptive_field(dilation, size):
  module = MultiscaleFusion(dilation=dilation)
  n, c = 71, 35
  x = jax.random.normal(jax.random.key(1), (4, n, n, 8))
  variables = module.init(jax.random.key(2), x[:1])

  def central(x):
    return module.apply(variables, x)[:, c, c, :].sum()

  g = np.asarray(jax.jit(jax.grad(central))(x))
  support = np.abs(g).sum(axis=(0, 3)) > 0
  rows, cols = np.nonzero(support)
  half = size // 2
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (c - half, c + half, c - half, c + half)
  assert support.sum() == size * size  # every pixel of the square, none outside


# --- residual attention (Eq 9) with hand-set weights -----------------------------------------

def _bn(scale, bias, mean, var):
  return ({'scale': jnp.asarray(scale, jnp.float32), 'bias': jnp.asarray(bias, jnp.float32)},
          {'mean': jnp.asarray(mean, jnp.float32), 'var': jnp.asarray(var, jnp.float32)})


def test_residual_attention_equals_one_plus_mask_times_trunk():
  rng = np.random.default_rng(0)
  C, c = 4, 2
  x = rng.normal(size=(2, 3, 3, C)).astype(np.float32)
  W = rng.normal(size=(C, c)).astype(np.float32)
  P = [rng.normal(size=(c, c)).astype(np.float32) for _ in range(2)]
  a, beta = [0.7, -1.3], [np.array([0.1, -0.2]), np.array([0.3, 0.05])]
  one = 1.0 - EPS  # BN variance that makes the normalisation exactly the identity
  params, stats = {}, {}
  params['trunk'], stats['trunk'] = {'Conv_0': {'kernel': W[None, None]}}, {}
  p, s = _bn([1.5, 0.5], [0.2, -0.1], [0.1, -0.3], [4.0, 0.25])
  params['trunk']['BatchNorm_0'], stats['trunk']['BatchNorm_0'] = p, s
  for i in range(2):
    dw = np.zeros((3, 3, 1, c), np.float32)
    dw[1, 1] = a[i]
    p, s = _bn(np.ones(c), np.zeros(c), np.zeros(c), np.full(c, one))
    params[f'mask{i}_dw'] = {'Conv_0': {'kernel': dw}, 'BatchNorm_0': p}
    stats[f'mask{i}_dw'] = {'BatchNorm_0': s}
    p, s = _bn(np.ones(c), beta[i], np.zeros(c), np.full(c, one))
    params[f'mask{i}_pw'] = {'Conv_0': {'kernel': P[i][None, None]}, 'BatchNorm_0': p}
    stats[f'mask{i}_pw'] = {'BatchNorm_0': s}
  ra = layers.ResidualAttention()
  shapes = jax.eval_shape(lambda: ra.init(jax.random.key(0), x))
  assert jax.tree.structure(shapes) == jax.tree.structure({'params': params, 'batch_stats': stats})
  h = ra.apply({'params': params, 'batch_stats': stats}, x, train=False)

  f = (x @ W - np.array([0.1, -0.3])) / np.sqrt(np.array([4.0, 0.25]) + EPS) * [1.5, 0.5] + [0.2, -0.1]
  r = f
  for i in range(2):
    r = r + np.clip(a[i] * r, 0, 6) @ P[i] + beta[i]
  m = 1 / (1 + np.exp(-r))
  np.testing.assert_allclose(h, (1 + m) * f, rtol=1e-5, atol=1e-5)

  # "no attention": the trunk alone, with the same parameters.
  trunk_only = layers.ResidualAttention(use_mask=False)
  h0 = trunk_only.apply({'params': {'trunk': params['trunk']},
                         'batch_stats': {'trunk': stats['trunk']}}, x, train=False)
  np.testing.assert_allclose(h0, f, rtol=1e-5, atol=1e-5)


# --- BatchNorm: train vs eval, jit and pmap --------------------------------------------------

def test_batchnorm_updates_in_train_not_in_eval():
  rng = np.random.default_rng(0)
  x = rng.normal(1.0, 2.0, size=(4, 5, 5, 3)).astype(np.float32)
  K = rng.normal(size=(3, 2)).astype(np.float32)
  module = layers.ConvBN(2, 1, act=None)
  v = module.init(jax.random.key(0), x)
  v = {'params': {'Conv_0': {'kernel': K[None, None]}, 'BatchNorm_0': v['params']['BatchNorm_0']},
       'batch_stats': v['batch_stats']}
  y = (x @ K).reshape(-1, 2)
  mu, var = y.mean(0), y.var(0)

  out, new = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=['batch_stats']))(v, x)
  bs = new['batch_stats']['BatchNorm_0']
  np.testing.assert_allclose(bs['mean'], 0.1 * mu, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bs['var'], 0.9 + 0.1 * var, rtol=1e-5)
  np.testing.assert_allclose(out.reshape(-1, 2), (y - mu) / np.sqrt(var + EPS), rtol=1e-4, atol=1e-4)

  v2 = {'params': v['params'], 'batch_stats': new['batch_stats']}
  out, same = jax.jit(lambda v, x: module.apply(v, x, train=False, mutable=['batch_stats']))(v2, x)
  jax.tree.map(np.testing.assert_array_equal, same['batch_stats'], new['batch_stats'])
  np.testing.assert_allclose(out.reshape(-1, 2), (y - bs['mean']) / np.sqrt(bs['var'] + EPS),
                             rtol=1e-4, atol=1e-4)


def test_batchnorm_under_pmap_averages_over_devices():
  n = jax.local_device_count()
  rng = np.random.default_rng(1)
  x = rng.normal(size=(n, 2, 3, 3, 2)).astype(np.float32) + np.arange(n)[:, None, None, None, None]
  module = layers.ConvBN(2, 1, act=None, bn_axis_name='batch')
  v = layers.ConvBN(2, 1, act=None).init(jax.random.key(0), x[0])
  v = {'params': {'Conv_0': {'kernel': np.eye(2, dtype=np.float32)[None, None]},
                  'BatchNorm_0': v['params']['BatchNorm_0']}, 'batch_stats': v['batch_stats']}
  step = jax.pmap(lambda v, x: module.apply(v, x, train=True, mutable=['batch_stats']),
                  axis_name='batch', in_axes=(None, 0))
  _, new = step(v, x)
  mean = np.asarray(new['batch_stats']['BatchNorm_0']['mean'])
  expected = 0.1 * x.reshape(-1, 2).mean(0)  # global batch mean over all devices
  for d in range(n):
    np.testing.assert_allclose(mean[d], expected, rtol=1e-5, atol=1e-6)


# --- the whole network, compiled once -------------------------------------------------------

def _host_variables(model, size=64):
  """He-normal kernels, unit BN and unit statistics, filled on the host from eval_shape.

  (model.init compiles one random generator per tensor: slow on a shared CPU.)
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, np.sqrt(2 / fan_in), leaf.shape).astype(np.float32)
    if "'scale'" in name or "'var'" in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_facernet_train_mode_updates_every_batchnorm():
  model = models.create_model('facernet')
  variables = _host_variables(model)
  images = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  out, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, images)
  assert out.shape == (2, 495) and out.dtype == jnp.float32 and np.all(np.isfinite(out))
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         variables['batch_stats'], new['batch_stats'])
  assert len(jax.tree.leaves(changed)) > 100 and all(jax.tree.leaves(changed))


def test_head_initial_prediction_near_zero():
  """The head's initial output is tiny (mean face, frontal, ambient light) but not zero."""
  from facernet_jax.models.facernet import RegressionHead
  head = RegressionHead()
  feats = jax.random.uniform(jax.random.key(0), (8, 4, 4, 1280), maxval=6.0)  # ReLU6 range
  v = head.init(jax.random.key(1), feats)
  out = head.apply(v, feats)
  assert out.shape == (8, 495)
  assert 0 < float(jnp.abs(out).max()) < 0.02  # < 1.2 degrees of rotation
  np.testing.assert_array_equal(v['params']['coefficients']['bias'], 0)


def test_coordinate_channels_hold_pixel_centres():
  from facernet_jax.models.facernet import with_coordinates
  x = np.zeros((2, 2, 4, 3), np.float32)  # height 2, width 4
  out = np.asarray(with_coordinates(jnp.asarray(x)))
  assert out.shape == (2, 2, 4, 5)
  np.testing.assert_allclose(out[0, 0, :, 3], [-0.75, -0.25, 0.25, 0.75])  # x of pixel centres
  np.testing.assert_allclose(out[1, :, 2, 4], [-0.5, 0.5])  # y of pixel centres
  np.testing.assert_array_equal(out[..., :3], x)


def test_coordinate_channels_feed_the_stem():
  net = models.create_model('facernet', width=0.25, use_multiscale=False, coord_channels=True)
  images = jnp.full((1, 32, 32, 3), 0.5, jnp.float32)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), images)['params']  # shapes only
  kernels = [x for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
             if 'stem' in jax.tree_util.keystr(path) and x.ndim == 4]
  assert [k.shape[2] for k in kernels] == [5]  # RGB + (x, y)


def test_output_scales_multiply_their_coefficient_groups():
  """Each named group's outputs are the Dense outputs times its scale (Eq 10 offsets by hand)."""
  from facernet_jax.models.facernet import RegressionHead
  head = RegressionHead(output_scales=(('rotation', 0.1), ('lighting', 0.5)))
  feats = jnp.ones((1, 1, 1, 8), jnp.float32)
  v = head.init(jax.random.key(0), feats)
  bias = np.arange(1, 496, dtype=np.float32)
  params = {'coefficients': {'kernel': np.zeros((8, 495), np.float32), 'bias': bias}}
  out = np.asarray(head.apply({'params': params}, feats))[0]
  expected = bias.copy()
  expected[462:465] *= 0.1  # rotation: after shape 199, texture 199, expression 64
  expected[468:495] *= 0.5  # lighting: after rotation 3 and translation 3
  np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize('scales, message', [((('pose', 0.1),), "unknown coefficient group 'pose'"),
                                             ((('translation', 0.0),), 'must be > 0')])
def test_output_scales_reject_bad_values(scales, message):
  net = models.create_model('facernet', width=0.25, use_multiscale=False, output_scales=scales)
  with pytest.raises(ValueError, match=message):  # raised while tracing: no compilation needed
    jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3), jnp.float32))


def test_appearance_branch_writes_only_texture_and_lighting():
  """Branch Dense bias 1..226, kernel 0: texture slots (199:398) get 1..199, lighting slots (468:495)
  get 200..226 times the lighting scale, every other slot 0 (Eq 10 offsets by hand)."""
  from facernet_jax.models.facernet import AppearanceBranch
  branch = AppearanceBranch(features=(4,), output_scales=(('lighting', 0.5), ('rotation', 0.1)))
  images = jnp.full((1, 8, 8, 3), 0.3, jnp.float32)
  v = branch.init(jax.random.key(0), images)
  params = jax.tree_util.tree_map(np.asarray, v['params'])
  params['coefficients'] = {'kernel': np.zeros_like(params['coefficients']['kernel']),
                            'bias': np.arange(1, 227, dtype=np.float32)}
  out = np.asarray(branch.apply({'params': params, 'batch_stats': v['batch_stats']}, images))[0]
  expected = np.zeros(495, np.float32)
  expected[199:398] = np.arange(1, 200)
  expected[468:495] = np.arange(200, 227) * 0.5
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_appearance_branch_adds_to_the_head_and_does_not_touch_geometry():
  """In FaceRNet the branch's parameters move texture and lighting but have zero gradient from
  the geometry outputs (shape, expression, pose), and the head's output is unchanged by it."""
  kw = dict(width=0.25, use_multiscale=False, output_scales=(('lighting', 0.1),))
  net = models.create_model('facernet', appearance_branch=True, **kw)
  plain = models.create_model('facernet', **kw)
  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  v = _host_variables(net, 32)  # filled on the host: no init to compile
  params = jax.tree_util.tree_map(np.asarray, v['params'])
  bias = np.random.default_rng(0).normal(size=226).astype(np.float32)
  params['appearance']['coefficients']['bias'] = bias
  kernel = params['appearance']['coefficients']['kernel']
  params['appearance']['coefficients']['kernel'] = np.zeros_like(kernel)  # delta = bias exactly
  branch_off = {k: x for k, x in params.items() if k != 'appearance'}
  stats_off = {k: x for k, x in v['batch_stats'].items() if k != 'appearance'}
  with_branch = np.asarray(jax.jit(net.apply)({'params': params, 'batch_stats': v['batch_stats']}, images))
  without = np.asarray(jax.jit(plain.apply)({'params': branch_off, 'batch_stats': stats_off}, images))
  geometry = np.r_[0:199, 398:468]
  np.testing.assert_array_equal(with_branch[:, geometry], without[:, geometry])
  delta = with_branch - without
  np.testing.assert_allclose(delta[:, 199:398], np.broadcast_to(bias[:199], (2, 199)), atol=1e-5)
  np.testing.assert_allclose(delta[:, 468:495], np.broadcast_to(bias[199:] * 0.1, (2, 27)), atol=1e-5)

  params['appearance']['coefficients']['kernel'] = kernel  # lets gradients reach the convs

  def output_sum(branch_params, mask):
    p = dict(params, appearance=branch_params)
    return (net.apply({'params': p, 'batch_stats': v['batch_stats']}, images) * mask).sum()

  grad = jax.jit(jax.grad(output_sum))  # the masks have one shape: one compilation for both
  geometry_grads = grad(params['appearance'], np.isin(np.arange(495), geometry).astype(np.float32))
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree_util.tree_leaves(geometry_grads))
  texture_grads = grad(params['appearance'], np.isin(np.arange(495), np.arange(199, 398)).astype(np.float32))
  assert np.abs(np.asarray(texture_grads['conv0']['Conv_0']['kernel'])).max() > 0


def test_appearance_branch_needs_the_495_outputs():
  net = models.create_model('facernet', width=0.25, use_multiscale=False, appearance_branch=True,
                            num_outputs=62)
  with pytest.raises(ValueError, match='appearance_branch needs the 495'):
    jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3), jnp.float32))


# --- depthwise implementations, static upsample, ReLU6 as one clamp -------------------------

def _lax_depthwise(x, k, stride, padding, dilation):
  return jax.lax.conv_general_dilated(x, k, (stride, stride), padding, rhs_dilation=(dilation,) * 2,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=x.shape[-1])


@pytest.mark.parametrize('size,stride,padding,dilation', [
    (8, 1, ((1, 1), (1, 1)), 1), (8, 2, ((1, 1), (1, 1)), 1), (7, 2, ((1, 1), (1, 1)), 1),
    (9, 1, ((3, 3), (3, 3)), 3), (7, 2, 'SAME', 1), (7, 1, 'VALID', 1)])
def test_shifted_depthwise_equals_grouped_conv_forward_and_gradients(size, stride, padding, dilation):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 1, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
  ref = _lax_depthwise(x, k, stride, padding, dilation)
  out = layers.shifted_depthwise_conv(x, k, (stride, stride), padding, rhs_dilation=(dilation,) * 2,
                                      feature_group_count=5)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)

  def loss(fn):  # a non-uniform cotangent, so every tap's gradient is distinct
    return lambda x, k: jnp.sum(jnp.sin(fn(x, k)) * w)

  g_ref = jax.grad(loss(lambda x, k: _lax_depthwise(x, k, stride, padding, dilation)), (0, 1))(x, k)
  g = jax.grad(loss(lambda x, k: layers.shifted_depthwise_conv(
      x, k, (stride, stride), padding, rhs_dilation=(dilation,) * 2, feature_group_count=5)), (0, 1))(x, k)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_shifted_depthwise_rejects_a_dense_kernel():
  with pytest.raises(ValueError, match='depthwise kernel'):
    layers.shifted_depthwise_conv(jnp.zeros((1, 4, 4, 4)), jnp.zeros((3, 3, 4, 4)), (1, 1),
                                  ((1, 1), (1, 1)), feature_group_count=1)


def test_depthwise_flag_keeps_parameters_and_outputs():
  """'conv' and 'shifted' networks have the same parameter tree and (to float32 rounding) outputs,
  and in train mode the same batch statistics; 'auto' is 'shifted' on this CPU backend."""
  kw = dict(width=0.25, use_multiscale=False)
  nets = {d: models.create_model('facernet', depthwise=d, **kw) for d in ('conv', 'shifted', 'auto')}
  images = jax.random.uniform(jax.random.key(0), (2, 40, 40, 3))
  shapes = {d: jax.eval_shape(lambda n=n: n.init(jax.random.key(0), images)) for d, n in nets.items()}
  assert jax.tree.structure(shapes['conv']) == jax.tree.structure(shapes['shifted'])
  assert jax.tree.map(lambda s: s.shape, shapes['conv']) == jax.tree.map(lambda s: s.shape, shapes['shifted'])
  variables = _host_variables(nets['conv'], 40)
  outs = {d: jax.jit(lambda v, x, n=n: n.apply(v, x, train=True, mutable=['batch_stats']))(variables, images)
          for d, n in nets.items()}
  np.testing.assert_allclose(outs['shifted'][0], outs['conv'][0], rtol=1e-4, atol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               outs['shifted'][1], outs['conv'][1])
  def group_counts(net):
    hlo = jax.jit(lambda v, x: net.apply(v, x)).lower(variables, images).as_text()
    return {int(n) for n in re.findall(r'feature_group_count = (\d+)', hlo)}

  assert group_counts(nets['auto']) == {1}  # no grouped convolution left on CPU
  assert max(group_counts(nets['conv'])) > 1
  with pytest.raises(ValueError, match="depthwise must be one of"):
    models.create_model('resnet50', depthwise='fast')


@pytest.mark.parametrize('shape,out', [((2, 2, 2, 3), (4, 4)), ((1, 4, 3, 2), (8, 6)),
                                       ((1, 4, 4, 1), (7, 7)), ((3, 5, 3, 2), (13, 4)), ((1, 6, 6, 1), (3, 4))])
def test_nearest_upsample_is_bit_identical_to_image_resize(shape, out):
  x = jax.random.normal(jax.random.key(3), shape)
  ref = jax.image.resize(x, (shape[0], *out, shape[3]), 'nearest')
  np.testing.assert_array_equal(layers.nearest_upsample(x, *out), ref)


def test_relu6_as_one_clip_equals_flax_relu6():
  x = jnp.asarray([-3.0, -0.0, 0.0, 1e-7, 2.5, 6.0, 6.5, 1e9, np.inf, -np.inf], jnp.float32)
  np.testing.assert_array_equal(layers.relu6(x), np.clip(np.asarray(x), 0, 6))
  np.testing.assert_array_equal(layers.relu6(x), nn.relu6(x))
  inside = jnp.asarray([-3.0, 1e-7, 2.5, 5.999, 6.5], jnp.float32)  # away from the kinks
  np.testing.assert_array_equal(jax.vmap(jax.grad(layers.relu6))(inside), [0, 1, 1, 1, 0])
