"""FaceDecoder (forward.py) against an independent numpy/scipy implementation of Eqs 1-6."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facernet_jax import forward
from facernet_jax import render as render_lib
from facernet_jax.face_model import build_synthetic_model

SIZE = 64
NOSE_TIP = 30
# Coefficient layout of Eq 10, written out here rather than imported.
SHAPE, TEX, EXP, ROT, TRANS, LIGHT = (slice(0, 199), slice(199, 398), slice(398, 462),
                                      slice(462, 465), slice(465, 468), slice(468, 495))


@pytest.fixture(scope='module')
def model():
  return build_synthetic_model(resolution=16, seed=0)


def _decode(model, coefficients, trainable_bases=False, raster=None):
  decoder = forward.FaceDecoder(face_model=model, image_size=SIZE, trainable_bases=trainable_bases,
                                raster=raster)
  coefficients = jnp.asarray(coefficients, jnp.float32)
  variables = decoder.init(jax.random.PRNGKey(0), coefficients)
  return variables, jax.device_get(decoder.apply(variables, coefficients))


def _numpy_geometry(model, c):
  """Eqs 1-5 in float64 numpy: (vertices, v_cam, screen (x, y, depth), rotation)."""
  c = np.asarray(c, np.float64)
  n = model.num_vertices
  v = (model.mean_shape.reshape(-1).astype(np.float64) + model.shape_basis @ c[SHAPE]
       + model.expression_basis @ c[EXP]).reshape(n, 3)
  pitch, yaw, roll = c[ROT]
  r = Rotation.from_euler('xyz', [pitch, yaw, roll]).as_matrix()  # extrinsic x, y, z = Rz Ry Rx
  v_cam = v @ r.T + c[TRANS]
  focal, centre = 1015.0 * SIZE / 224.0, SIZE / 2.0
  d = 10.0 - v_cam[:, 2]
  screen = np.stack([focal * v_cam[:, 0] / d + centre, centre - focal * v_cam[:, 1] / d, d], 1)
  return v, v_cam, screen, r


def _numpy_vertex_normals(v, triangles):
  """Deng's normals: normalise(sum of unit (v1 - v2) x (v2 - v3) over adjacent faces)."""
  a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
  fn = np.cross(a - b, b - c)
  fn /= np.linalg.norm(fn, axis=1, keepdims=True)
  out = np.zeros_like(v)
  for k in range(3):
    np.add.at(out, triangles[:, k], fn)
  return out / np.linalg.norm(out, axis=1, keepdims=True)


def _numpy_shade(albedo, normals, gamma27):
  """Eq 6 with Deng's SH constants, written from the formulas."""
  nx, ny, nz = normals[:, 0], normals[:, 1], normals[:, 2]
  a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)
  c0, c1, c2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi), \
      3 * math.sqrt(5) / math.sqrt(12 * math.pi)
  basis = np.stack([np.full_like(nx, a0 * c0), -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx,
                    a2 * c2 * nx * ny, -a2 * c2 * ny * nz,
                    a2 * c2 / (2 * math.sqrt(3)) * (3 * nz ** 2 - 1), -a2 * c2 * nx * nz,
                    a2 * c2 / 2 * (nx ** 2 - ny ** 2)], 1)
  gamma = np.asarray(gamma27, np.float64).reshape(3, 9).copy()
  gamma[:, 0] += 0.8
  return albedo * (basis @ gamma.T)


def _random_coefficients(rng, batch):
  c = np.zeros((batch, 495))
  c[:, SHAPE] = rng.normal(0, 0.7, (batch, 199))
  c[:, TEX] = rng.normal(0, 0.7, (batch, 199))
  c[:, EXP] = rng.normal(0, 0.7, (batch, 64))
  c[:, ROT] = rng.uniform(-0.6, 0.6, (batch, 3))
  c[:, TRANS] = rng.uniform(-0.2, 0.2, (batch, 3))
  c[:, LIGHT] = rng.normal(0, 0.1, (batch, 27))
  return c.astype(np.float32)


def test_zero_coefficients_give_the_frontal_centred_mean_face(model):
  _, out = _decode(model, np.zeros((2, 495)))
  np.testing.assert_allclose(out['vertices'][0], model.mean_shape, atol=1e-6)
  # Independent projection of the mean shape's landmark vertices (identity pose, Eq 5).
  p = model.mean_shape[model.landmark_indices].astype(np.float64)
  focal, d = 1015.0 * SIZE / 224.0, 10.0 - p[:, 2]
  expected = np.stack([focal * p[:, 0] / d + SIZE / 2, SIZE / 2 - focal * p[:, 1] / d], 1)
  np.testing.assert_allclose(out['landmarks'][0], expected, atol=1e-3)
  np.testing.assert_array_equal(out['landmarks'][0], out['landmarks'][1])
  # Centred: the mean shape is centred on the origin, so the projected vertex box is centred.
  lo, hi = out['screen'][0, :, :2].min(0), out['screen'][0, :, :2].max(0)
  np.testing.assert_allclose((lo + hi) / 2, [SIZE / 2, SIZE / 2], atol=0.05 * SIZE)
  # Frontal: the outer eye corners (36, 45) are mirror images about the vertical centre line.
  eyes = out['landmarks'][0, [36, 45]]
  assert abs(eyes[:, 0].mean() - SIZE / 2) < 1.5 and abs(eyes[0, 1] - eyes[1, 1]) < 1.0


@pytest.mark.parametrize('trainable_bases', [False, True])
def test_geometry_matches_numpy_eqs_1_to_5(model, trainable_bases):
  c = _random_coefficients(np.random.default_rng(0), 3)
  variables, out = _decode(model, c, trainable_bases=trainable_bases)
  for b in range(3):
    v, v_cam, screen, r = _numpy_geometry(model, c[b])
    np.testing.assert_allclose(out['vertices'][b], v, atol=1e-4)
    np.testing.assert_allclose(out['rotation'][b], r, atol=1e-5)
    np.testing.assert_allclose(out['vertices_cam'][b], v_cam, atol=1e-4)
    np.testing.assert_allclose(out['screen'][b], screen, atol=2e-3)
    np.testing.assert_allclose(out['landmarks'][b], screen[model.landmark_indices, :2], atol=2e-3)
  params = variables.get('params', {})
  if trainable_bases:
    assert set(params['morphable_model']) == {'FC_shape', 'FC_texture'}
  else:
    assert not params


def test_normals_and_shading_match_numpy_eq_6(model):
  c = _random_coefficients(np.random.default_rng(1), 2)
  _, out = _decode(model, c)
  for b in range(2):
    v, _, _, r = _numpy_geometry(model, c[b])
    normals = _numpy_vertex_normals(v, model.triangles) @ r.T
    np.testing.assert_allclose(out['normals'][b], normals, atol=1e-4)
    albedo = (model.mean_albedo.reshape(-1) + model.texture_basis @ c[b, TEX].astype(np.float64))
    albedo = albedo.reshape(-1, 3)
    np.testing.assert_allclose(out['albedo'][b], albedo, atol=1e-4)
    np.testing.assert_allclose(out['colours'][b], _numpy_shade(albedo, normals, c[b, LIGHT]),
                               atol=1e-3)


def test_yaw_and_pitch_move_the_nose_tip_the_expected_way(model):
  c = np.zeros((3, 495), np.float32)
  c[1, ROT] = [0.0, np.deg2rad(30.0), 0.0]  # positive yaw about +y: +z (nose) swings to +x
  c[2, ROT] = [np.deg2rad(20.0), 0.0, 0.0]  # positive pitch about +x: +z swings to -y (image down)
  _, out = _decode(model, c)
  nose = out['landmarks'][:, NOSE_TIP]
  assert nose[1, 0] > nose[0, 0] + 2.0
  assert nose[2, 1] > nose[0, 1] + 2.0
  # Turning the head moves the nose tip more than the face centre (it is in front of it).
  centre_shift = out['screen'][1, :, 0].mean() - out['screen'][0, :, 0].mean()
  assert nose[1, 0] - nose[0, 0] > centre_shift + 1.0


def test_render_covers_the_landmark_box(model):
  settings = render_lib.RasterSettings(image_size=SIZE, mode='hard')
  c = np.zeros((2, 495), np.float32)
  c[1] = _random_coefficients(np.random.default_rng(2), 1)[0]
  c[1, ROT] = [0.1, 0.3, -0.1]
  _, out = _decode(model, c, raster=settings)
  rendered = out['render']
  assert rendered.image.shape == (2, SIZE, SIZE, 3)
  assert int(np.max(rendered.overflow)) == 0
  for b in range(2):
    inner = out['landmarks'][b, 17:]  # brows, nose, eyes, mouth: inside the face outline
    x0, y0 = np.floor(inner.min(0)).astype(int)
    x1, y1 = np.ceil(inner.max(0)).astype(int)
    alpha = rendered.alpha[b]
    if b == 0:  # frontal mean face: the whole inner-landmark box is face
      assert alpha[y0:y1, x0:x1].min() == 1.0
    else:  # turned face: the box corners may fall outside the oval, the points themselves do not
      cols, rows = np.floor(inner).astype(int).T
      assert alpha[rows, cols].min() == 1.0 and alpha[y0:y1, x0:x1].mean() > 0.8
    # Everything covered lies within the projected mesh's bounding box; the corners are background.
    lo, hi = out['screen'][b, :, :2].min(0), out['screen'][b, :, :2].max(0)
    ys, xs = np.nonzero(alpha > 0)
    assert xs.min() + 0.5 >= lo[0] - 1e-3 and xs.max() + 0.5 <= hi[0] + 1e-3
    assert ys.min() + 0.5 >= lo[1] - 1e-3 and ys.max() + 0.5 <= hi[1] + 1e-3
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
  # The hard render at a covered pixel is the shaded colour of its triangle (0 <= bary <= 1 mix).
  face = int(rendered.face_index[0, SIZE // 2, SIZE // 2])
  colours = out['colours'][0][model.triangles[face]]
  pixel = rendered.image[0, SIZE // 2, SIZE // 2]
  assert np.all(pixel >= colours.min(0) - 1e-4) and np.all(pixel <= colours.max(0) + 1e-4)


@pytest.mark.parametrize('geometry_gradient', [True, False])
def test_render_geometry_gradient_switch(model, geometry_gradient):
  """render_geometry_gradient=False: a loss on the render has no gradient w.r.t. shape, expression or
  pose, while its lighting and texture gradients still match central finite differences."""
  settings = render_lib.RasterSettings(image_size=SIZE, mode='hard')
  decoder = forward.FaceDecoder(face_model=model, image_size=SIZE, trainable_bases=False, raster=settings,
                                render_geometry_gradient=geometry_gradient)
  c = jnp.asarray(_random_coefficients(np.random.default_rng(5), 1), jnp.float32)
  variables = decoder.init(jax.random.PRNGKey(0), c)
  target = jnp.asarray(np.random.default_rng(6).uniform(0, 1, (1, SIZE, SIZE, 3)), jnp.float32)
  loss = jax.jit(lambda c: jnp.mean(jnp.square(decoder.apply(variables, c)['render'].image - target)))
  g = np.asarray(jax.jit(jax.grad(loss))(c))[0]
  geometry = np.r_[g[SHAPE], g[EXP], g[ROT], g[TRANS]]
  if geometry_gradient:
    assert np.abs(geometry).max() > 0
  else:
    assert np.all(geometry == 0)
  for i in (LIGHT.start, LIGHT.start + 4, TEX.start):
    eps = 1e-2
    fd = (float(loss(c.at[0, i].add(eps))) - float(loss(c.at[0, i].add(-eps)))) / (2 * eps)
    assert g[i] == pytest.approx(fd, rel=2e-2, abs=1e-6)
  # The decoder's other outputs keep their geometry gradients either way.
  landmark_grad = jax.grad(lambda c: jnp.sum(decoder.apply(variables, c)['landmarks']))(c)
  assert np.abs(np.asarray(landmark_grad)[0, ROT]).max() > 0
