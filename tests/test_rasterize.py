"""Rasteriser tests against independent references: a numpy z-buffer, an all-pairs JAX soft renderer,
finite differences and hand-built edge cases."""
import dataclasses
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facernet_jax.render import RasterSettings
from facernet_jax.render import render_mesh as _render_mesh

raster_lib = importlib.import_module('facernet_jax.render.rasterize')
render_mesh = jax.jit(_render_mesh, static_argnums=3)
SIZE = 16


HARD = RasterSettings(image_size=SIZE, mode='hard', chunk_size=7)  # tiny chunks: many loop steps
EDGE_SETTINGS = {mode: RasterSettings(image_size=SIZE, mode=mode, sigma=0.5, faces_per_pixel=4, chunk_size=64,
                                      background=(0.1, 0.2, 0.3)) for mode in ('soft', 'hard')}


def _loss(v, c, tri, settings):
  o = _render_mesh(v, tri, c, settings)
  return jnp.sum(o.image) + jnp.sum(o.alpha) + jnp.sum(o.depth) + jnp.sum(o.bary), o


# One compilation gives the render and its gradients.
_render_and_grad = jax.jit(jax.value_and_grad(_loss, argnums=(0, 1), has_aux=True), static_argnums=3)


def random_mesh(seed, batch=2, size=SIZE, num_vertices=18, num_faces=14):
  """Random triangle soup over a size x size image (some faces large, overlapping, partly off screen)."""
  rng = np.random.default_rng(seed)
  xy = rng.uniform(-2, size + 2, (batch, num_vertices, 2))
  z = rng.uniform(2.0, 6.0, (batch, num_vertices, 1))
  tri = np.stack([rng.choice(num_vertices, 3, replace=False) for _ in range(num_faces)]).astype(np.int32)
  colours = rng.uniform(size=(batch, num_vertices, 3))
  return np.concatenate([xy, z], -1), tri, colours


# ------------------------------------------------------------------------------------ numpy z-buffer reference

def numpy_zbuffer(sv, tri, size, znear=1.0, zfar=100.0):
  """Brute-force float64 z-buffer: (face index, depth, ambiguous-pixel mask) per pixel."""
  batch = sv.shape[0]
  face = -np.ones((batch, size, size), np.int64)
  depth = np.zeros((batch, size, size))
  ambiguous = np.zeros((batch, size, size), bool)
  for b in range(batch):
    for i in range(size):
      for j in range(size):
        hits = []
        for f, corners in enumerate(tri):
          p = sv[b, corners]
          if np.any(p[:, 2] <= znear) or np.all(p[:, 2] >= zfar):
            continue
          m = np.array([p[:, 0], p[:, 1], np.ones(3)])
          if abs(np.linalg.det(m)) < 1e-6:
            continue
          lam = np.linalg.solve(m, np.array([j + 0.5, i + 0.5, 1.0]))
          if np.min(np.abs(lam)) < 1e-6:
            ambiguous[b, i, j] = True
          if np.all(lam >= 0):
            hits.append((1.0 / np.sum(lam / p[:, 2]), f))
        if hits:
          hits.sort()
          depth[b, i, j], face[b, i, j] = hits[0]
          if len(hits) > 1 and hits[1][0] - hits[0][0] < 1e-6:
            ambiguous[b, i, j] = True
  return face, depth, ambiguous


def test_hard_matches_numpy_zbuffer():
  sv, tri, colours = random_mesh(0)
  out = render_mesh(sv.astype(np.float32), tri, colours.astype(np.float32), HARD)
  ref_face, ref_depth, ambiguous = numpy_zbuffer(sv, tri, SIZE)
  assert np.all(np.asarray(out.overflow) == 0)
  ok = ~ambiguous
  assert ok.mean() > 0.95 and (ref_face >= 0).mean() > 0.3
  np.testing.assert_array_equal(np.asarray(out.face_index)[ok], ref_face[ok])
  np.testing.assert_allclose(np.asarray(out.depth)[ok], ref_depth[ok], rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(out.alpha)[ok], (ref_face >= 0)[ok])
  # Hard image = perspective-correct interpolation of the visible face's colours (hand-computed).
  for b, i, j in np.argwhere((ref_face >= 0) & ok)[::17]:
    p = sv[b, tri[ref_face[b, i, j]]]
    lam = np.linalg.solve(np.array([p[:, 0], p[:, 1], np.ones(3)]), [j + 0.5, i + 0.5, 1.0]) / p[:, 2]
    lam /= lam.sum()
    np.testing.assert_allclose(np.asarray(out.bary)[b, i, j], lam, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.image)[b, i, j], lam @ colours[b, tri[ref_face[b, i, j]]],
                               atol=1e-5)


# ------------------------------------------------------------------------------ all-pairs soft reference (JAX)

def all_pairs_soft(sv, tri, colours, s):
  """Soft render comparing every pixel with every face: the formula of docs/renderer.md, no chunks."""
  size, k = s.image_size, s.faces_per_pixel
  ii, jj = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing='ij')
  q = jnp.stack([jj.ravel(), ii.ravel()], -1)[None, :, None, :]  # (1, P, 1, 2)
  p = sv[:, tri]  # (B, F, 3, 3)
  xy, z = p[..., :2][:, None], p[..., 2][:, None]  # (B, 1, F, 3, 2), (B, 1, F, 3)
  e = jnp.roll(xy, -1, axis=-2) - xy  # edges v_i -> v_{i+1}
  rel = q[..., None, :] - xy
  t = jnp.clip(jnp.sum(rel * e, -1) / jnp.sum(e * e, -1), 0, 1)
  d2 = jnp.min(jnp.sum((rel - t[..., None] * e) ** 2, -1), -1)
  cross = e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]  # same sign for all edges <=> inside
  inside = jnp.all(cross >= 0, -1) | jnp.all(cross <= 0, -1)
  area = e[..., 0, 0] * (-e[..., 2, 1]) - e[..., 0, 1] * (-e[..., 2, 0])
  lam_c = jnp.maximum(jnp.roll(cross, -1, axis=-1) / area[..., None], 0)  # clipped barycentrics
  zpix = jnp.sum(lam_c, -1) / jnp.sum(lam_c / z, -1)
  bary = (lam_c / z) / jnp.sum(lam_c / z, -1, keepdims=True)
  valid = jnp.all(z > s.znear, -1) & jnp.any(z < s.zfar, -1)
  signed = jnp.where(inside, -d2, d2)
  num_faces = tri.shape[0]
  # Visible face: nearest covering one. Then the other candidates within the blur radius by depth.
  hard = jnp.where(valid & inside, zpix, jnp.inf)
  vis = jnp.where(jnp.isfinite(hard.min(-1)), jnp.argmin(hard, -1), -1)
  is_vis = jnp.arange(num_faces) == vis[..., None]
  cand = valid & (signed < s.sigma * math.log(1 / s.prob_eps - 1))
  key = jnp.where(cand, zpix, jnp.inf)
  order = jnp.argsort(jnp.where(is_vis, -jnp.inf, key), axis=-1)[..., :k]  # (B, P, K), visible first
  sorted_key = jnp.sort(key, axis=-1)[..., :k + 1]
  gaps = jnp.diff(sorted_key, axis=-1)
  tie = jnp.any((gaps < 1e-9) & jnp.isfinite(sorted_key[..., 1:]), -1)  # "K nearest" ill-defined
  take = lambda a: jnp.take_along_axis(a, order, axis=-1)
  present = take(cand | is_vis)
  prob = jnp.where(present, jax.nn.sigmoid(-take(signed) / s.sigma), 0.0)
  bary_k = jnp.take_along_axis(bary, order[..., None], axis=2)
  col_k = colours[:, tri][jnp.arange(sv.shape[0])[:, None, None], order]  # (B, P, K, 3, C)
  col = jnp.einsum('bpkv,bpkvc->bpkc', bary_k, col_k)
  z_inv = jnp.where(present, (s.zfar - take(zpix)) / (s.zfar - s.znear), 0.0)
  z_max = jnp.maximum(z_inv.max(-1, keepdims=True), s.blend_eps)
  wts = prob * jnp.exp((z_inv - z_max) / s.gamma)
  delta = jnp.maximum(jnp.exp((s.blend_eps - z_max) / s.gamma), s.blend_eps)
  bg = jnp.asarray(s.background)
  image = (jnp.einsum('bpk,bpkc->bpc', wts, col) + delta * bg) / (wts.sum(-1, keepdims=True) + delta)
  alpha = 1 - jnp.prod(1 - prob, -1)
  depth = jnp.where(vis >= 0, hard.min(-1), 0.0)
  shape = (sv.shape[0], size, size)
  return (image.reshape(shape + (-1,)), alpha.reshape(shape), depth.reshape(shape), vis.reshape(shape),
          tie.reshape(shape))


@pytest.mark.parametrize('seed,k,sigma,chunk', [(3, 3, 0.5, 4096), (5, 6, 0.2, 5)])
def test_soft_matches_all_pairs(seed, k, sigma, chunk):
  sv, tri, colours = random_mesh(seed, num_faces=12)
  settings = RasterSettings(image_size=SIZE, mode='soft', sigma=sigma, gamma=0.05, faces_per_pixel=k,
                            chunk_size=chunk, background=(0.2, 0.4, 0.9))
  with jax.enable_x64(True):
    out = render_mesh(sv, tri, colours, settings)
    image, alpha, depth, vis, tie = jax.jit(all_pairs_soft, static_argnums=3)(sv, tri, colours, settings)
    assert np.all(np.asarray(out.overflow) == 0)
    ok = ~np.asarray(tie)
    assert ok.mean() > 0.85
    np.testing.assert_allclose(np.asarray(out.image)[ok], np.asarray(image)[ok], atol=1e-9)
    np.testing.assert_allclose(np.asarray(out.alpha)[ok], np.asarray(alpha)[ok], atol=1e-9)
    np.testing.assert_allclose(out.depth, depth, atol=1e-9)
    np.testing.assert_array_equal(out.face_index, vis)
  assert 0.05 < float(alpha.mean()) < 0.99  # the scene is neither empty nor fully covered


def test_soft_tends_to_hard():
  """sigma, gamma -> 0: the soft image equals the z-buffer image away from edges."""
  sv, tri, colours = random_mesh(6)
  sv, colours = sv.astype(np.float32), colours.astype(np.float32)
  hard = render_mesh(sv, tri, colours, HARD)
  soft_s = RasterSettings(image_size=SIZE, sigma=1e-4, gamma=1e-6, faces_per_pixel=4)
  soft = render_mesh(sv, tri, colours, soft_s)
  frags = jax.jit(raster_lib.rasterize, static_argnums=2)(sv, tri, soft_s)
  far = np.asarray(jnp.min(jnp.abs(frags.dist), -1)) > 1e-2  # pixel centre not on an edge
  assert far.mean() > 0.8
  np.testing.assert_allclose(np.asarray(soft.image)[far], np.asarray(hard.image)[far], atol=1e-4)
  np.testing.assert_allclose(np.asarray(soft.alpha)[far], np.asarray(hard.alpha)[far], atol=1e-4)


# ------------------------------------------------------------------------------------------ finite differences

@pytest.mark.parametrize('mode', ['soft', 'hard'])
def test_gradients_match_finite_differences(mode):
  size = 12
  sv, tri, colours = random_mesh(7, batch=1, size=size, num_vertices=8, num_faces=5)
  settings = RasterSettings(image_size=size, mode=mode, sigma=0.8, gamma=0.05, faces_per_pixel=5)
  rng = np.random.default_rng(1)
  wi, wa, wd = (rng.normal(size=(1, size, size, 3)), rng.normal(size=(1, size, size)),
                rng.normal(size=(1, size, size)))

  def loss(v, c):
    out = _render_mesh(v, tri, c, settings)
    return jnp.sum(out.image * wi) + jnp.sum(out.alpha * wa) + 0.1 * jnp.sum(out.depth * wd)

  value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))  # one compilation for both
  f = lambda v, c: value_and_grad(v, c)[0]
  with jax.enable_x64(True):
    gv, gc = value_and_grad(jnp.asarray(sv), jnp.asarray(colours))[1]
    assert np.abs(np.asarray(gv)).sum() > 0 and np.abs(np.asarray(gc)).sum() > 0
    for _ in range(3):
      dv, dc = rng.normal(size=sv.shape), rng.normal(size=colours.shape)
      eps = 1e-6
      fd_v = (f(sv + eps * dv, colours) - f(sv - eps * dv, colours)) / (2 * eps)
      fd_c = (f(sv, colours + eps * dc) - f(sv, colours - eps * dc)) / (2 * eps)
      np.testing.assert_allclose(np.sum(gv * dv), fd_v, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(np.sum(gc * dc), fd_c, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------- edge cases

GOOD = np.array([[2.0, 2.0, 3.0], [13.0, 3.0, 3.0], [4.0, 13.0, 3.0]])  # clockwise with y down
BAD = [
    np.array([[5.0, 5.0, 3.0], [5.0, 5.0, 3.0], [9.0, 9.0, 3.0]]),  # repeated vertex
    np.array([[1.0, 1.0, 3.0], [8.0, 8.0, 2.0], [15.0, 15.0, 3.0]]),  # collinear
    np.array([[1.0, 1.0, -3.0], [15.0, 1.0, -3.0], [1.0, 15.0, -3.0]]),  # behind the camera
    np.array([[1.0, 1.0, 0.5], [15.0, 1.0, 3.0], [1.0, 15.0, 3.0]]),  # crosses the near plane
    np.array([[1.0, 1.0, 0.0], [15.0, 1.0, 0.0], [1.0, 15.0, 0.0]]),  # at depth 0
    np.array([[np.inf, 1.0, 3.0], [1.0, np.nan, 3.0], [1.0, 5.0, 3.0]]),  # non-finite
    np.array([[20.0, 20.0, 3.0], [30.0, 20.0, 3.0], [20.0, 30.0, 3.0]]),  # off screen
    np.array([[1e30, 8.0, 3.0], [-1e30, 9.0, 3.0], [8.0, 1e30, 3.0]]),  # huge (clamped, visible)
]


def _scene(parts):
  sv = np.concatenate(parts)[None].astype(np.float32)
  return sv, np.arange(sv.shape[1]).reshape(-1, 3).astype(np.int32), np.ones((1, sv.shape[1], 3), np.float32)


@pytest.mark.parametrize('mode', ['soft', 'hard'])
def test_edge_cases_no_nan(mode):
  """Degenerate, behind-camera, near-plane-crossing, non-finite, off-screen and huge triangles."""
  settings = EDGE_SETTINGS[mode]
  scenes = {'all': [GOOD] + BAD, 'no_huge': [GOOD] + BAD[:-1], 'alone': [GOOD] * 9,
            'empty': BAD[:-1] + [BAD[0]]}  # same shapes: one compilation
  outs = {}
  for name, parts in scenes.items():
    sv, tri, colours = _scene(parts)
    (_, out), grads = _render_and_grad(sv, colours, tri, settings)
    outs[name] = out
    for field, a in zip(out._fields, out):
      assert np.all(np.isfinite(np.asarray(a))), (name, field)
    for g in grads:
      assert np.all(np.isfinite(np.asarray(g))), name
  # Culled triangles leave the good one's render unchanged; the huge one (clamped) covers the image.
  np.testing.assert_allclose(outs['no_huge'].image, outs['alone'].image, atol=1e-6)
  np.testing.assert_array_equal(outs['no_huge'].face_index, np.where(outs['alone'].face_index >= 0, 0, -1))
  assert float(outs['all'].alpha.mean()) > float(outs['no_huge'].alpha.mean()) + 0.2
  # An image with only culled / off-screen faces is the background.
  empty = outs['empty']
  np.testing.assert_allclose(empty.image, np.broadcast_to([0.1, 0.2, 0.3], empty.image.shape), atol=1e-6)
  assert float(jnp.abs(empty.alpha).max()) < 1e-6
  assert np.all(np.asarray(empty.face_index) == -1) and np.all(np.asarray(empty.depth) == 0)


@pytest.mark.parametrize('mode', ['soft', 'hard'])
def test_back_faces(mode):
  ccw = GOOD[[0, 2, 1]]  # counter-clockwise with y up (front-facing), clockwise with y down
  culling = dataclasses.replace(EDGE_SETTINGS[mode], cull_backfaces=True)
  for verts, front in ((ccw, True), (GOOD, False)):
    sv, tri, colours = _scene([verts] * 9)
    assert float(_render_and_grad(sv, colours, tri, EDGE_SETTINGS[mode])[0][1].alpha.max()) > 0.5
    if mode == 'hard':  # the culling flag acts before the mode split: one mode suffices
      assert (float(render_mesh(sv, tri, colours, culling).alpha.max()) > 0.5) == front


def test_pair_limit_overflow_is_counted(monkeypatch):
  """Pairs past the int32-safety limit are dropped and counted exactly (limit lowered for the test)."""
  monkeypatch.setattr(raster_lib, '_MAX_PAIRS', 250.0)
  far = GOOD + [0.0, 0.0, 1.0]
  sv, tri, colours = _scene([far, far + [0.0, 0.0, 1.0], GOOD])
  # Pixel centres in each face's bounding box [2, 13] x [2, 13]: columns and rows 2..12, 121 pairs; the
  # third face would bring the total to 363 > 250, so it is dropped (it is the nearest one).
  settings = RasterSettings(image_size=SIZE, mode='hard', chunk_size=64)
  out = jax.jit(_render_mesh, static_argnums=3)(sv, tri, colours, settings)
  assert int(out.overflow[0]) == 121
  assert set(np.unique(np.asarray(out.face_index))) == {-1, 0}


def test_vmap_and_pmap_match_batched():
  sv, tri, colours = random_mesh(8, batch=2)
  sv, colours = sv.astype(np.float32), colours.astype(np.float32)
  settings = EDGE_SETTINGS['soft']
  ref = render_mesh(sv, tri, colours, settings)
  vm = jax.jit(jax.vmap(lambda v, c: _render_mesh(v, tri, c, settings)))(sv[:, None], colours[:, None])
  np.testing.assert_allclose(vm.image[:, 0], ref.image, atol=1e-6)
  if jax.local_device_count() >= 2:
    pm = jax.pmap(lambda v, c: _render_mesh(v, tri, c, settings))(sv[:, None], colours[:, None])
    np.testing.assert_allclose(pm.image[:, 0], ref.image, atol=1e-6)
    np.testing.assert_array_equal(pm.face_index[:, 0], ref.face_index)


def test_render_projects_with_camera():
  """render() = render_mesh on the contract's projection x = f X / d + cx, y = cy - f Y / d."""
  camera_lib = pytest.importorskip('facernet_jax.render.camera')
  from facernet_jax.render import render  # pylint: disable=g-import-not-at-top
  cam = camera_lib.Camera.for_image_size(SIZE)
  v = np.array([[[-0.2, -0.2, 0.0], [0.25, -0.1, 0.1], [0.0, 0.3, -0.1]]], np.float32)
  d = cam.camera_distance - v[..., 2]
  screen = np.stack([cam.focal * v[..., 0] / d + cam.cx, cam.cy - cam.focal * v[..., 1] / d, d], -1)
  tri, colours = np.array([[0, 1, 2]], np.int32), np.ones((1, 3, 3), np.float32)
  np.testing.assert_allclose(render(v, tri, colours, cam, HARD).depth,
                             render_mesh(screen, tri, colours, HARD).depth, rtol=1e-5)


@pytest.mark.parametrize('mode', ['hard', 'soft'])
def test_background_fills_extra_attribute_channels(mode):
  """A 3-value background with 6-channel attributes: colour on the first 3 channels, 0 on the rest."""
  sv, tri, _ = random_mesh(0, batch=1)
  attrs = jnp.ones(sv.shape[:2] + (6,), jnp.float32)
  settings = RasterSettings(image_size=SIZE, mode=mode, background=(0.2, 0.3, 0.4))
  out = _render_mesh(sv, tri, attrs, settings)
  empty = np.asarray(out.alpha[0]) == 0
  assert empty.any()
  np.testing.assert_allclose(np.asarray(out.image[0])[empty], np.tile([0.2, 0.3, 0.4, 0, 0, 0], (empty.sum(), 1)),
                             atol=1e-6)
