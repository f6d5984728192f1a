"""Soft / hard mesh rasteriser in pure JAX (SoftRas / PyTorch3D family), exact and memory-bounded.

Two stages, with static shapes throughout (jit, vmap, pmap):

1. Selection (no gradient). Every triangle's blur-expanded bounding box is enumerated as (pixel, face)
   pairs, in face order, `chunk_size` pairs at a time inside a while loop. Per chunk, scatter-max of 1/depth
   keeps the nearest covering face per pixel (the z-buffer) and K rounds of scatter-max keep the K nearest
   soft candidates (merged with a running per-pixel buffer). Nothing of size (pixels x triangles) is built,
   there is no per-tile capacity to overflow, and memory is O(faces + pixels * K + chunk_size).
2. Evaluation (differentiable). For the few selected faces per pixel, barycentrics, signed distances and
   depths are recomputed from the vertex positions, so gradients reach vertices and colours (nvdiffrast
   style for the hard image, SoftRas style for the soft silhouette).

Screen vertices are `camera.project` outputs (x_px, y_px, view_depth); pixel (i, j) has centre
(j + 0.5, i + 0.5). Signed distances are squared, in pixels^2, negative inside (as PyTorch3D's `dists`).
See docs/renderer.md.
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
# Pairs per image beyond which faces are dropped (keeps int32 pair indices exact).
_MAX_PAIRS = float(1 << 30)


@dataclasses.dataclass(frozen=True)
class RasterSettings:
  """Static rasteriser configuration (hashable, so it can be a jit static argument).

  image_size: square output size in pixels.
  mode: 'soft' (SoftRas/PyTorch3D soft blend over K faces) or 'hard' (z-buffer).
  sigma: soft edge sharpness in pixels^2 (prob = sigmoid(-signed_sq_dist / sigma)).
  gamma: depth softness of the blend (on depth normalised to [0, 1] between znear and zfar).
  faces_per_pixel: K nearest candidates kept per pixel in soft mode.
  chunk_size: (pixel, face) pairs processed per selection step; bounds memory, not correctness. None:
    2**17 in soft mode; in hard mode image_size**2 clipped to [4096, 2**17] (only boxes around a pixel
    centre make pairs there, about one per covered pixel).
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
  chunk_size: Optional[int] = None
  background: tuple = (0.0, 0.0, 0.0)
  znear: float = 1.0
  zfar: float = 100.0
  prob_eps: float = 1e-4
  blend_eps: float = 1e-10
  cull_backfaces: bool = False

  def __post_init__(self):
    if self.mode not in ('soft', 'hard'):
      raise ValueError(f"RasterSettings.mode must be 'soft' or 'hard', got {self.mode!r}")
    if self.image_size <= 0 or self.faces_per_pixel <= 0 or (self.chunk_size or 1) <= 0:
      raise ValueError('RasterSettings.image_size, chunk_size and faces_per_pixel must be positive')
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
  def pairs_per_step(self):
    """The chunk size actually used (see chunk_size)."""
    if self.chunk_size is not None:
      return int(self.chunk_size)
    if self.mode == 'hard':
      return min(1 << 17, max(4096, self.image_size * self.image_size))
    return 1 << 17

  @property
  def num_candidates(self):
    return 1 if self.mode == 'hard' else self.faces_per_pixel


class Fragments(NamedTuple):
  """Per-pixel rasterisation result; K = settings.num_candidates.

  Candidates: the visible face first (when the pixel is covered), then the other faces within the blur
  radius by increasing depth (one face per distinct depth: the highest index).

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
  background), bary (B,H,W,3), overflow (B,) int32 ((pixel, face) pairs not processed; 0 unless an image
  has more than 2**30 of them)."""
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


def _face_data(screen_vertices, triangles, settings):
  """Per-face screen data (a tuple of 10 (B,F) arrays, see _X0...) and the validity mask (B,F).

  Invalid faces (behind the near plane, beyond the far plane, degenerate, non-finite, culled back faces)
  are replaced by a harmless unit triangle so no later division produces NaN (in values or gradients).
  """
  batch, num_vertices = screen_vertices.shape[:2]
  flat = (triangles[None] + num_vertices * jnp.arange(batch, dtype=jnp.int32)[:, None, None]).reshape(-1)
  v = screen_vertices.reshape(-1, 3)[flat].reshape(batch, -1, 3, 3)  # (B, F, 3, 3), row gather
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
  data = (x0, y0, x1, y1, x2, y2, 1.0 / zs[..., 0], 1.0 / zs[..., 1], 1.0 / zs[..., 2], 1.0 / area)
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
  # A pixel whose nearest point is a vertex gets that vertex's 1/depth bit-exactly, so faces sharing the
  # vertex tie exactly (and are deduplicated in selection) whatever the rounding of the general formula.
  inv_depth = jnp.where((c1 == 0) & (c2 == 0), iz0,
                        jnp.where((c0 == 0) & (c2 == 0), iz1, jnp.where((c0 == 0) & (c1 == 0), iz2, inv_depth)))
  return (w0, w1, w2), (c0, c1, c2), inside, signed, inv_depth


def _as_float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _take(data, index):
  """Gathers every field of `data` (tuple of (M,) arrays) at `index` (fields kept separate: the
  backward pass of interleaved fields is several times slower on CPU)."""
  return tuple(f[index] for f in data)


# ---------------------------------------------------------------------------------------------------------
# Stage 1: selection (no gradient) over chunks of (pixel, face) pairs.
# ---------------------------------------------------------------------------------------------------------

def _pixel_ranges(data, valid, settings):
  """Per-face pixel-centre index box [j0, j0 + nx) x [i0, i0 + ny) of the blur-expanded bbox; count."""
  size = settings.image_size
  r = math.sqrt(settings.blur_radius_sq)
  xs = jnp.stack([data[_X0], data[_X1], data[_X2]], -1)
  ys = jnp.stack([data[_Y0], data[_Y1], data[_Y2]], -1)
  j0 = jnp.maximum(jnp.ceil(jnp.min(xs, -1) - r - 0.5), 0)
  j1 = jnp.minimum(jnp.floor(jnp.max(xs, -1) + r - 0.5), size - 1)
  i0 = jnp.maximum(jnp.ceil(jnp.min(ys, -1) - r - 0.5), 0)
  i1 = jnp.minimum(jnp.floor(jnp.max(ys, -1) + r - 0.5), size - 1)
  on_screen = valid & (j1 >= j0) & (i1 >= i0)
  j0, i0, j1, i1 = (jnp.where(on_screen, a, 0).astype(jnp.int32) for a in (j0, i0, j1, i1))
  nx, ny = j1 - j0 + 1, i1 - i0 + 1
  return j0, i0, nx, jnp.where(on_screen, nx * ny, 0)


def _select_one(data, valid, settings):
  """One image: K nearest soft candidates (S*S, K) and the nearest covering face (S*S,), as face ids.

  The (pixel, face) pairs of all blur-expanded bounding boxes are enumerated in order (face-major) and
  processed `chunk_size` at a time in a while loop, so memory is bounded and nothing is ever dropped.
  Per chunk, the nearest covering face is a scatter-max of 1/depth (equal depths: highest face index);
  the K nearest soft candidates are K rounds of scatter-max, each taking the largest 1/depth strictly
  below the previous round's, merged with the running buffer, so candidates have distinct depths: faces
  whose nearest point is the same shared vertex (equal depth, distance and colour) count once, which is
  exact because that depth is the vertex's own 1/depth (see _pair_geometry).
  """
  num_faces = valid.shape[0]
  size = settings.image_size
  num_pixels = size * size
  k = settings.num_candidates
  chunk = settings.pairs_per_step
  soft = settings.mode == 'soft'
  r2 = settings.blur_radius_sq
  dtype = data[0].dtype
  neg_inf = jnp.array(-jnp.inf, dtype)

  j0, i0, nx, count = _pixel_ranges(data, valid, settings)
  # Keep the int32 pair counter from wrapping: faces past 2**30 pairs are dropped (and reported).
  fits = jnp.cumsum(count.astype(jnp.float32)) <= _MAX_PAIRS
  dropped = jnp.sum(jnp.where(fits, 0.0, count.astype(jnp.float32)))
  count = jnp.where(fits, count, 0)
  end = jnp.cumsum(count)
  start = end - count
  total = end[-1]
  num_chunks = (total + chunk - 1) // chunk

  def body(state):
    c, best_key, best_face, buf_key, buf_face = state
    w0 = c * chunk
    p = w0 + jnp.arange(chunk, dtype=jnp.int32)
    # Owner face of pair p = (number of faces starting at or before p) - 1.
    base = jnp.searchsorted(start, w0, side='left')
    rel = jnp.where((start >= w0) & (start < w0 + chunk), start - w0, chunk)
    marker = jnp.zeros(chunk, jnp.int32).at[rel].add(1, mode='drop')
    owner = jnp.clip(base + jnp.cumsum(marker) - 1, 0, num_faces - 1)
    local = p - start[owner]
    nxo = jnp.maximum(nx[owner], 1)
    col = j0[owner] + local % nxo
    row = i0[owner] + local // nxo
    ok = p < total
    pix = jnp.where(ok, row * size + col, num_pixels)
    _, _, inside, signed, inv_depth = _pair_geometry(
        col.astype(dtype) + 0.5, row.astype(dtype) + 0.5, _take(data, owner))

    def scatter_max(values, init):
      return jnp.full((num_pixels,), init, values.dtype).at[pix].max(values, mode='drop')

    # Nearest covering face (hard z-buffer).
    hard_key = jnp.where(ok & inside, inv_depth, neg_inf)
    m = jnp.maximum(scatter_max(hard_key, neg_inf), best_key)
    m_at = m.at[pix].get(mode='fill', fill_value=jnp.inf)
    new_face = scatter_max(jnp.where((hard_key == m_at) & (hard_key > neg_inf), owner, -1), -1)
    best_face = jnp.maximum(new_face, jnp.where((best_key == m) & (m > neg_inf), best_face, -1))
    best_key = m

    if soft:
      # K rounds, each taking the largest 1/depth strictly below the previous round's, over this chunk's
      # pairs and the running buffer; then each distinct value's (highest) face is scattered to its slot.
      key = jnp.where(ok & (signed < r2), inv_depth, neg_inf)
      prev = jnp.full((num_pixels,), jnp.inf, dtype)
      slot = jnp.full(key.shape, -1, jnp.int32)
      rounds = []
      for i in range(k):
        prev_at = prev.at[pix].get(mode='fill', fill_value=-jnp.inf)
        below = jnp.where(buf_key < prev[:, None], buf_key, neg_inf)
        prev = jnp.maximum(scatter_max(jnp.where(key < prev_at, key, neg_inf), neg_inf),
                           jnp.max(below, axis=-1))
        slot = jnp.where((key == prev.at[pix].get(mode='fill', fill_value=jnp.inf)) & (key > neg_inf),
                         i, slot)
        rounds.append(prev)
      new_key = jnp.stack(rounds, -1)  # (S*S, K), strictly decreasing over the finite entries
      flat = jnp.where(slot >= 0, pix * k + slot, num_pixels * k)
      from_pairs = jnp.full((num_pixels * k,), -1, jnp.int32).at[flat].max(owner, mode='drop')
      match = (buf_key[:, None, :] == new_key[:, :, None]) & (new_key[:, :, None] > neg_inf)
      from_buf = jnp.max(jnp.where(match, buf_face[:, None, :], -1), axis=-1)
      buf_face = jnp.maximum(from_pairs.reshape(num_pixels, k), from_buf)
      buf_key = new_key
    return c + 1, best_key, best_face, buf_key, buf_face

  state = (jnp.int32(0), jnp.full((num_pixels,), neg_inf), jnp.full((num_pixels,), -1, jnp.int32),
           jnp.full((num_pixels, k), neg_inf), jnp.full((num_pixels, k), -1, jnp.int32))
  _, _, visible, _, faces = jax.lax.while_loop(lambda st: st[0] < num_chunks, body, state)
  if soft:
    faces = _with_visible_first(visible, faces)
  else:
    faces = visible[:, None]
  overflow = jnp.minimum(dropped, _MAX_PAIRS).astype(jnp.int32)
  return faces.reshape(size, size, k), visible.reshape(size, size), overflow


def _with_visible_first(visible, faces):
  """(P,) visible and (P,K) nearest candidates -> (P,K): visible first, then the others in order.

  Forcing the covering face in keeps alpha ~1 inside dense meshes, where the K nearest faces within the
  blur radius are often all neighbours that do not cover the pixel (PyTorch3D's behaviour).
  """
  k = faces.shape[-1]
  cands = jnp.concatenate([visible[:, None], faces], axis=-1)  # (P, K+1)
  keep = (cands >= 0) & jnp.concatenate(
      [jnp.ones_like(visible[:, None], bool), faces != visible[:, None]], axis=-1)
  pos = jnp.cumsum(keep, axis=-1) - 1
  onehot = keep[..., None] & (pos[..., None] == jnp.arange(k))  # (P, K+1, K)
  return jnp.max(jnp.where(onehot, cands[..., None], -1), axis=-2)


def _select(data, valid, settings):
  """Batched selection, one image at a time (bounded memory): faces (B,H,W,K), visible (B,H,W), overflow."""
  return jax.lax.map(lambda a: _select_one(a[0], a[1], settings), (data, valid))


# ---------------------------------------------------------------------------------------------------------
# Stage 2: differentiable evaluation of the selected faces.
# ---------------------------------------------------------------------------------------------------------

def _gather_rows(table, index):
  """table (B,M,D), index (B,...) (negative -> row 0) -> (B*prod(...), D) by a flat row gather (fast
  scatter-add gradient on CPU, unlike batched take_along_axis)."""
  batch, rows, depth = table.shape
  flat = jnp.maximum(index, 0).reshape(batch, -1) + rows * jnp.arange(batch, dtype=jnp.int32)[:, None]
  return table.reshape(-1, depth)[flat.reshape(-1)]


def _evaluate(data, faces, settings):
  """Perspective-correct barycentrics, depth and signed distance of `faces` (B,H,W,K) at pixel centres."""
  batch, h, w, k = faces.shape
  num_faces = data[0].shape[1]
  flat = (jnp.maximum(faces, 0) + num_faces * jnp.arange(batch, dtype=jnp.int32)[:, None, None, None])
  f = _take(tuple(a.reshape(-1) for a in data), flat)
  py = (jnp.arange(h, dtype=f[0].dtype) + 0.5)[None, :, None, None]
  px = (jnp.arange(w, dtype=f[0].dtype) + 0.5)[None, None, :, None]
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
  # The visible face, when there is one, is candidate 0 in both modes.
  covered = (visible >= 0)[..., None]
  vbary, vdepth = jnp.where(covered, bary[..., 0, :], 0.0), jnp.where(covered[..., 0], depth[..., 0], 0.0)
  return Fragments(faces, bary, depth, dist, visible, vbary, vdepth, overflow)


# ---------------------------------------------------------------------------------------------------------
# Shading: interpolation and blending.
# ---------------------------------------------------------------------------------------------------------

def interpolate(vertex_attributes, triangles, faces, bary):
  """Interpolates (B,N,C) vertex attributes at faces (B,...) with bary (B,...,3); 0 where face = -1."""
  c = vertex_attributes.shape[-1]
  vidx = jnp.asarray(triangles, jnp.int32)[jnp.maximum(faces, 0)]  # (B, ..., 3)
  vals = _gather_rows(vertex_attributes, vidx).reshape(vidx.shape + (c,))
  out = jnp.sum(vals * bary[..., None], axis=-2)
  return jnp.where((faces >= 0)[..., None], out, 0.0)


def _background(settings, channels):
  """Background value per channel: one value for all, or per channel (extra channels default to 0)."""
  bg = jnp.asarray(settings.background, jnp.float32).reshape(-1)
  if bg.size == 1:
    return jnp.broadcast_to(bg, (channels,))
  if bg.size >= channels:
    return bg[:channels]
  return jnp.concatenate([bg, jnp.zeros((channels - bg.size,), bg.dtype)])


def soft_blend(colours, fragments, settings):
  """PyTorch3D softmax_rgb_blend: colours (B,H,W,K,C) -> image (B,H,W,C), alpha (B,H,W)."""
  present = fragments.face_index >= 0
  # Exponent arguments are cut at -30 (e^-30 ~ 1e-13, below float32 resolution relative to the leading
  # term): otherwise denormal values in the backward pass slow CPUs down by an order of magnitude.
  prob = jnp.where(present, jax.nn.sigmoid(jnp.clip(-fragments.dist / settings.sigma, -30.0, 30.0)), 0.0)
  alpha = 1.0 - jnp.prod(1.0 - prob, axis=-1)
  z_inv = (settings.zfar - fragments.depth) / (settings.zfar - settings.znear)
  z_inv = jnp.where(present, z_inv, 0.0)
  z_max = jnp.maximum(jnp.max(z_inv, axis=-1, keepdims=True), settings.blend_eps)
  arg = (z_inv - z_max) / settings.gamma
  weights = jnp.where(arg > -30.0, prob * jnp.exp(jnp.maximum(arg, -30.0)), 0.0)
  delta = jnp.maximum(jnp.exp(jnp.maximum((settings.blend_eps - z_max) / settings.gamma, -30.0)),
                      settings.blend_eps)
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
