"""Tile-binned soft / hard mesh rasteriser in pure JAX (SoftRas / PyTorch3D family).

Two stages, as in PyTorch3D's coarse-to-fine rasteriser, with static shapes throughout:

1. Selection (no gradient). Triangles are binned into `tile_size` screen tiles: each triangle emits one
   (tile, triangle) pair per tile its blur-expanded bounding box touches, into a static pair budget;
   the pairs are stably sorted by tile and the first `tile_capacity` of each tile form its candidate
   list. Every pixel of the tile tests its tile's candidates and keeps the K nearest (soft) and the
   nearest covering one (hard). Nothing of size (pixels x triangles) is built; dropped candidates are
   counted in `overflow`.
2. Evaluation (differentiable). For the few selected faces per pixel, barycentrics, signed distances and
   depths are recomputed from the vertex positions, so gradients reach vertices and colours.

Screen vertices are `camera.project` outputs (x_px, y_px, view_depth); pixel (i, j) has centre
(j + 0.5, i + 0.5). Signed distances are squared, in pixels^2, negative inside (as PyTorch3D's `dists`).
"""
import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

# Screen coordinates are clamped to this magnitude (pixels) so squared distances stay finite in float32.
_COORD_LIMIT = 1e6
# Triangles with |2 x area| below this (pixels^2) are degenerate and culled.
_MIN_AREA = 1e-9


@dataclasses.dataclass(frozen=True)
class RasterSettings:
  """Static rasteriser configuration (hashable, so it can be a jit static argument).

  image_size: square output size in pixels.
  mode: 'soft' (SoftRas/PyTorch3D soft blend over K faces) or 'hard' (z-buffer).
  sigma: soft edge sharpness in pixels^2 (prob = sigmoid(-signed_sq_dist / sigma)).
  gamma: depth softness of the blend (on depth normalised to [0, 1] between znear and zfar).
  faces_per_pixel: K nearest candidates kept per pixel in soft mode.
  tile_size: side of a screen tile in pixels (binning granularity).
  tile_capacity: candidates kept per tile; more are dropped and counted in `overflow`.
  pair_capacity: total (tile, triangle) pairs per image; None = 4 F + 4 tiles.
  background: background colour (tuple, one value per channel or one value for all).
  znear, zfar: triangles with a vertex at depth <= znear, or all beyond zfar, are culled.
  prob_eps: soft candidates are faces with prob >= prob_eps (this sets the blur radius).
  blend_eps: background term of the softmax blend (PyTorch3D's eps).
  cull_backfaces: drop triangles whose screen winding is clockwise in (x right, y up), i.e. facing away
    for counter-clockwise meshes (y is down in pixel coordinates).
  """
  image_size: int = 224
  mode: str = 'soft'
  sigma: float = 0.1
  gamma: float = 1e-4
  faces_per_pixel: int = 8
  tile_size: int = 8
  tile_capacity: int = 256
  pair_capacity: Optional[int] = None
  background: tuple = (0.0, 0.0, 0.0)
  znear: float = 1.0
  zfar: float = 100.0
  prob_eps: float = 1e-4
  blend_eps: float = 1e-10
  cull_backfaces: bool = False

  def __post_init__(self):
    if self.mode not in ('soft', 'hard'):
      raise ValueError(f"RasterSettings.mode must be 'soft' or 'hard', got {self.mode!r}")
    if self.image_size <= 0 or self.tile_size <= 0 or self.tile_capacity <= 0:
      raise ValueError('RasterSettings.image_size, tile_size and tile_capacity must be positive')
    if self.faces_per_pixel <= 0 or (self.mode == 'soft' and self.faces_per_pixel > self.tile_capacity):
      raise ValueError('RasterSettings.faces_per_pixel must be in [1, tile_capacity]')
    if not 0 < self.znear < self.zfar:
      raise ValueError('RasterSettings needs 0 < znear < zfar')
    if self.sigma <= 0 or self.gamma <= 0:
      raise ValueError('RasterSettings.sigma and gamma must be positive')
    if not isinstance(self.background, tuple):
      object.__setattr__(self, 'background', tuple(np.atleast_1d(self.background).tolist()))

  @property
  def blur_radius_sq(self):
    """Squared pixel distance beyond which prob < prob_eps (0 in hard mode)."""
    if self.mode == 'hard':
      return 0.0
    return self.sigma * math.log(1.0 / self.prob_eps - 1.0)

  @property
  def num_candidates(self):
    return 1 if self.mode == 'hard' else self.faces_per_pixel


class Fragments(NamedTuple):
  """Per-pixel rasterisation result; K = settings.num_candidates, sorted nearest first.

  face_index (B,H,W,K) int32, -1 = no candidate; bary (B,H,W,K,3) perspective-correct (clipped to the
  triangle for soft candidates outside it); depth (B,H,W,K) view depth at the pixel; dist (B,H,W,K) signed
  squared distance in px^2 (negative inside); visible_* the nearest face covering the pixel centre (hard
  z-buffer result) with its barycentrics and depth (0 for background); overflow (B,) dropped candidates.
  """
  face_index: jax.Array
  bary: jax.Array
  depth: jax.Array
  dist: jax.Array
  visible_face: jax.Array
  visible_bary: jax.Array
  visible_depth: jax.Array
  overflow: jax.Array


class RenderOutput(NamedTuple):
  """image (B,H,W,C), alpha (B,H,W), depth (B,H,W) (0 = background), face_index (B,H,W) int32 (-1 =
  background), bary (B,H,W,3), overflow (B,) int32 (candidates dropped because a tile was full)."""
  image: jax.Array
  alpha: jax.Array
  depth: jax.Array
  face_index: jax.Array
  bary: jax.Array
  overflow: jax.Array


# ---------------------------------------------------------------------------------------------------------
# Per-face data and per-(pixel, face) geometry.
# ---------------------------------------------------------------------------------------------------------

# Field layout of the packed per-face array (last axis).
_X0, _Y0, _X1, _Y1, _X2, _Y2, _IZ0, _IZ1, _IZ2, _INV_AREA = range(10)
_NUM_FIELDS = 10


def _face_data(screen_vertices, triangles, settings):
  """Packs per-face screen data (B,F,10) and the validity mask (B,F).

  Invalid faces (behind the near plane, beyond the far plane, degenerate, non-finite, culled back faces)
  are replaced by a harmless unit triangle so no later division produces NaN (in values or gradients).
  """
  v = screen_vertices[:, triangles]  # (B, F, 3, 3)
  finite = jnp.all(jnp.isfinite(v), axis=(-1, -2))
  v = jnp.where(finite[..., None, None], v, 1.0)
  xy = jnp.clip(v[..., :2], -_COORD_LIMIT, _COORD_LIMIT)
  z = v[..., 2]
  x0, x1, x2 = xy[..., 0, 0], xy[..., 1, 0], xy[..., 2, 0]
  y0, y1, y2 = xy[..., 0, 1], xy[..., 1, 1], xy[..., 2, 1]
  area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
  valid = finite & jnp.all(z > settings.znear, axis=-1) & jnp.any(z < settings.zfar, axis=-1)
  valid &= jnp.abs(area) > _MIN_AREA
  if settings.cull_backfaces:
    valid &= area < 0  # counter-clockwise with y up is clockwise with y down
  safe = lambda a, d: jnp.where(valid, a, d)
  x0, y0, x1, y1, x2, y2 = (safe(x0, -10.), safe(y0, -10.), safe(x1, -9.), safe(y1, -10.),
                            safe(x2, -10.), safe(y2, -9.))
  area = safe(area, 1.0)
  zs = jnp.where(valid[..., None], z, 1.0)
  data = jnp.stack([x0, y0, x1, y1, x2, y2, 1.0 / zs[..., 0], 1.0 / zs[..., 1], 1.0 / zs[..., 2],
                    1.0 / area], axis=-1)
  return data, valid


def _pair_geometry(px, py, f):
  """Screen barycentrics (3 arrays), signed squared distance and clipped 1/depth at pixel (px, py).

  `f` is a tuple of the 10 face fields, each broadcastable against px/py. Pure elementwise, so it serves
  both the batched selection pass and the differentiable per-pixel evaluation.
  """
  x0, y0, x1, y1, x2, y2, iz0, iz1, iz2, inv_area = f
  ax, ay = x0 - px, y0 - py
  bx, by = x1 - px, y1 - py
  cx, cy = x2 - px, y2 - py
  w0 = (bx * cy - by * cx) * inv_area
  w1 = (cx * ay - cy * ax) * inv_area
  w2 = (ax * by - ay * bx) * inv_area
  inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)

  def seg_dist_sq(ux, uy, vx, vy):  # distance^2 from the origin (the pixel) to segment u-v
    dx, dy = vx - ux, vy - uy
    len_sq = dx * dx + dy * dy
    len_sq = jnp.where(len_sq > 0, len_sq, 1.0)
    t = jnp.clip(-(ux * dx + uy * dy) / len_sq, 0.0, 1.0)
    ex, ey = ux + t * dx, uy + t * dy
    return ex * ex + ey * ey

  d_sq = jnp.minimum(jnp.minimum(seg_dist_sq(ax, ay, bx, by), seg_dist_sq(bx, by, cx, cy)),
                     seg_dist_sq(cx, cy, ax, ay))
  signed = jnp.where(inside, -d_sq, d_sq)
  c0, c1, c2 = jnp.maximum(w0, 0.0), jnp.maximum(w1, 0.0), jnp.maximum(w2, 0.0)
  csum = jnp.maximum(c0 + c1 + c2, 1e-12)
  inv_depth = (c0 * iz0 + c1 * iz1 + c2 * iz2) / csum
  return (w0, w1, w2), (c0, c1, c2), inside, signed, inv_depth


def _as_float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _fields(data):
  return tuple(data[..., k] for k in range(_NUM_FIELDS))


# ---------------------------------------------------------------------------------------------------------
# Stage 1: selection by tile binning (no gradient).
# ---------------------------------------------------------------------------------------------------------

def _grid(settings):
  t = settings.tile_size
  tiles_per_side = -(-settings.image_size // t)
  return t, tiles_per_side, tiles_per_side * tiles_per_side


def pair_capacity(num_faces, settings):
  """Static (tile, triangle) pair budget per image."""
  if settings.pair_capacity is not None:
    return int(settings.pair_capacity)
  _, _, num_tiles = _grid(settings)
  return 4 * int(num_faces) + 4 * num_tiles


def _bin_faces(data, valid, settings):
  """Candidate lists (B, tiles, capacity) of face ids (-1 padded), and dropped-pair counts (B,)."""
  batch, num_faces = valid.shape
  size = settings.image_size
  t, per_side, num_tiles = _grid(settings)
  cap = settings.tile_capacity
  budget = pair_capacity(num_faces, settings)
  r = math.sqrt(settings.blur_radius_sq)

  xs = data[..., _X0:_Y2 + 1:2]
  ys = data[..., _Y0:_Y2 + 1:2]
  # Pixel-centre index ranges [j0, j1] x [i0, i1] of the blur-expanded bounding box.
  j0 = jnp.ceil(jnp.min(xs, -1) - r - 0.5)
  j1 = jnp.floor(jnp.max(xs, -1) + r - 0.5)
  i0 = jnp.ceil(jnp.min(ys, -1) - r - 0.5)
  i1 = jnp.floor(jnp.max(ys, -1) + r - 0.5)
  j0, i0 = jnp.maximum(j0, 0), jnp.maximum(i0, 0)
  j1, i1 = jnp.minimum(j1, size - 1), jnp.minimum(i1, size - 1)
  on_screen = valid & (j1 >= j0) & (i1 >= i0)
  j0, i0, j1, i1 = (jnp.where(on_screen, a, 0) for a in (j0, i0, j1, i1))
  tx0, ty0 = (j0 // t).astype(jnp.int32), (i0 // t).astype(jnp.int32)
  ntx = (j1 // t).astype(jnp.int32) - tx0 + 1
  nty = (i1 // t).astype(jnp.int32) - ty0 + 1
  count = jnp.where(on_screen, ntx * nty, 0)

  # Expand faces into pairs: pair p belongs to the face whose [start, start + count) range holds p.
  end = jnp.cumsum(count, axis=-1)
  start = end - count
  total = end[:, -1]
  rows = jnp.arange(batch)[:, None]
  marker = jnp.zeros((batch, budget + 1), jnp.int32).at[rows, jnp.minimum(start, budget)].add(1)
  owner = jnp.cumsum(marker[:, :budget], axis=-1) - 1
  owner = jnp.clip(owner, 0, num_faces - 1)
  p = jnp.arange(budget, dtype=jnp.int32)[None]
  local = p - jnp.take_along_axis(start, owner, axis=-1)
  ntx_o = jnp.maximum(jnp.take_along_axis(ntx, owner, axis=-1), 1)
  tx = jnp.take_along_axis(tx0, owner, axis=-1) + local % ntx_o
  ty = jnp.take_along_axis(ty0, owner, axis=-1) + local // ntx_o
  tile = jnp.where(p < total[:, None], ty * per_side + tx, num_tiles)

  # Stable sort by tile keeps faces in index order inside each tile (deterministic tie-breaking).
  tile_sorted, face_sorted = jax.lax.sort((tile, owner), dimension=-1, num_keys=1, is_stable=True)
  bounds = jax.vmap(lambda a: jnp.searchsorted(a, jnp.arange(num_tiles + 1, dtype=a.dtype)))(tile_sorted)
  tile_start, tile_count = bounds[:, :-1], bounds[:, 1:] - bounds[:, :-1]
  slot = jnp.arange(cap, dtype=jnp.int32)
  idx = jnp.minimum(tile_start[..., None] + slot, budget - 1)
  cand = jnp.take_along_axis(face_sorted, idx.reshape(batch, -1), axis=-1).reshape(batch, num_tiles, cap)
  cand = jnp.where(slot < tile_count[..., None], cand, -1)
  overflow = jnp.sum(jnp.maximum(tile_count - cap, 0), axis=-1) + jnp.maximum(total - budget, 0)
  return cand, overflow.astype(jnp.int32)


def _select(data, valid, settings):
  """Per-pixel K nearest soft candidates and the nearest covering face, as face ids (-1 = none)."""
  batch = valid.shape[0]
  size = settings.image_size
  t, per_side, num_tiles = _grid(settings)
  k = settings.num_candidates
  cand, overflow = _bin_faces(data, valid, settings)  # (B, G, C)

  # Pixel centres of every tile: (G, t*t).
  ty, tx = jnp.divmod(jnp.arange(num_tiles), per_side)
  oy, ox = jnp.divmod(jnp.arange(t * t), t)
  py = (ty[:, None] * t + oy[None] + 0.5).astype(data.dtype)
  px = (tx[:, None] * t + ox[None] + 0.5).astype(data.dtype)

  fd = jnp.take_along_axis(data, jnp.maximum(cand, 0).reshape(batch, -1, 1), axis=1)
  fd = fd.reshape(batch, num_tiles, 1, cand.shape[-1], _NUM_FIELDS)
  _, _, inside, signed, inv_depth = _pair_geometry(px[None, :, :, None], py[None, :, :, None], _fields(fd))
  present = (cand >= 0)[:, :, None, :]

  neg_inf = -jnp.inf
  hard_key = jnp.where(present & inside, inv_depth, neg_inf)  # (B, G, t*t, C)
  best = jnp.argmax(hard_key, axis=-1)
  best_ok = jnp.take_along_axis(hard_key, best[..., None], axis=-1)[..., 0] > neg_inf
  cand_b = jnp.broadcast_to(cand[:, :, None, :], hard_key.shape)
  visible = jnp.where(best_ok, jnp.take_along_axis(cand_b, best[..., None], axis=-1)[..., 0], -1)

  if settings.mode == 'hard':
    faces = visible[..., None]
  else:
    soft_key = jnp.where(present & (signed < settings.blur_radius_sq), inv_depth, neg_inf)
    top_val, top_idx = jax.lax.top_k(soft_key, k)
    faces = jnp.where(top_val > neg_inf, jnp.take_along_axis(cand_b, top_idx, axis=-1), -1)

  def to_image(a):  # (B, G, t*t, ...) -> (B, H, W, ...)
    rest = a.shape[3:]
    a = a.reshape((batch, per_side, per_side, t, t) + rest)
    a = jnp.moveaxis(a, 3, 2).reshape((batch, per_side * t, per_side * t) + rest)
    return a[:, :size, :size]

  return to_image(faces), to_image(visible), overflow


# ---------------------------------------------------------------------------------------------------------
# Stage 2: differentiable evaluation of the selected faces.
# ---------------------------------------------------------------------------------------------------------

def _evaluate(data, faces, settings):
  """Perspective-correct barycentrics, depth and signed distance of `faces` (B,H,W,K) at pixel centres."""
  batch, h, w, k = faces.shape
  fd = jnp.take_along_axis(data, jnp.maximum(faces, 0).reshape(batch, -1, 1), axis=1)
  fd = fd.reshape(batch, h, w, k, _NUM_FIELDS)
  py = (jnp.arange(h, dtype=data.dtype) + 0.5)[None, :, None, None]
  px = (jnp.arange(w, dtype=data.dtype) + 0.5)[None, None, :, None]
  f = _fields(fd)
  _, clipped, _, signed, inv_depth = _pair_geometry(px, py, f)
  iz = (f[_IZ0], f[_IZ1], f[_IZ2])
  pc = [c * z for c, z in zip(clipped, iz)]
  norm = jnp.maximum(pc[0] + pc[1] + pc[2], 1e-30)
  bary = jnp.stack([c / norm for c in pc], axis=-1)
  present = faces >= 0
  depth = jnp.where(present, 1.0 / jnp.where(present, inv_depth, 1.0), 0.0)
  bary = jnp.where(present[..., None], bary, 0.0)
  signed = jnp.where(present, signed, jnp.inf)
  return bary, depth, signed


def rasterize(screen_vertices, triangles, settings):
  """Rasterises (B,N,3) screen vertices (x_px, y_px, view_depth) with (F,3) triangles into Fragments."""
  screen_vertices = _as_float(screen_vertices)
  triangles = jnp.asarray(triangles, jnp.int32)
  data, valid = _face_data(screen_vertices, triangles, settings)
  faces, visible, overflow = _select(jax.lax.stop_gradient(data), valid, settings)
  bary, depth, dist = _evaluate(data, faces, settings)
  if settings.mode == 'hard':
    vbary, vdepth = bary[..., 0, :], depth[..., 0]
  else:
    vbary, vdepth, _ = _evaluate(data, visible[..., None], settings)
    vbary, vdepth = vbary[..., 0, :], vdepth[..., 0]
  return Fragments(faces, bary, depth, dist, visible, vbary, vdepth, overflow)


# ---------------------------------------------------------------------------------------------------------
# Shading: interpolation and blending.
# ---------------------------------------------------------------------------------------------------------

def interpolate(vertex_attributes, triangles, faces, bary):
  """Interpolates (B,N,C) vertex attributes at faces (B,...) with bary (B,...,3); 0 where face = -1."""
  batch, n, c = vertex_attributes.shape
  vidx = jnp.asarray(triangles, jnp.int32)[jnp.maximum(faces, 0)]  # (B, ..., 3)
  vals = jnp.take_along_axis(vertex_attributes, vidx.reshape(batch, -1, 1), axis=1)
  vals = vals.reshape(vidx.shape + (c,))
  out = jnp.sum(vals * bary[..., None], axis=-2)
  return jnp.where((faces >= 0)[..., None], out, 0.0)


def _background(settings, channels):
  bg = jnp.asarray(settings.background)
  return jnp.broadcast_to(bg, (channels,)) if bg.size in (1, channels) else bg[:channels]


def soft_blend(colours, fragments, settings):
  """PyTorch3D softmax_rgb_blend: colours (B,H,W,K,C) -> image (B,H,W,C), alpha (B,H,W)."""
  present = fragments.face_index >= 0
  prob = jnp.where(present, jax.nn.sigmoid(-fragments.dist / settings.sigma), 0.0)
  alpha = 1.0 - jnp.prod(1.0 - prob, axis=-1)
  z_inv = (settings.zfar - fragments.depth) / (settings.zfar - settings.znear)
  z_inv = jnp.where(present, z_inv, 0.0)
  z_max = jnp.maximum(jnp.max(z_inv, axis=-1, keepdims=True), settings.blend_eps)
  weights = prob * jnp.exp((z_inv - z_max) / settings.gamma)
  delta = jnp.maximum(jnp.exp((settings.blend_eps - z_max) / settings.gamma), settings.blend_eps)
  denom = jnp.sum(weights, axis=-1, keepdims=True) + delta
  bg = _background(settings, colours.shape[-1])
  image = (jnp.sum(weights[..., None] * colours, axis=-2) + delta * bg) / denom
  return image, alpha


def render_mesh(screen_vertices, triangles, vertex_colours, settings):
  """Renders (B,N,C) vertex colours; returns RenderOutput (see rasterize for the two stages)."""
  vertex_colours = _as_float(vertex_colours)
  frags = rasterize(screen_vertices, triangles, settings)
  covered = frags.visible_face >= 0
  if settings.mode == 'hard':
    bg = _background(settings, vertex_colours.shape[-1])
    colour = interpolate(vertex_colours, triangles, frags.visible_face, frags.visible_bary)
    image = jnp.where(covered[..., None], colour, bg)
    alpha = covered.astype(image.dtype)
  else:
    colours = interpolate(vertex_colours, triangles, frags.face_index, frags.bary)
    image, alpha = soft_blend(colours, frags, settings)
  return RenderOutput(image, alpha, frags.visible_depth, frags.visible_face, frags.visible_bary,
                      frags.overflow)
