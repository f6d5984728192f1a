"""Mesh utilities: face / vertex normals (for Eq 6) and static adjacency tables.

Normals follow Deng et al.: ``n_f = normalise((v1 - v2) x (v2 - v3))``, which points towards the viewer
for triangles listed counter-clockwise as seen by the camera (the BFM's order, and the synthetic model's),
so normals on the front of the face point out of the head (+z). A vertex normal is the normalised sum of
the unit normals of its adjacent faces. Degenerate (zero-area) faces get a zero normal with zero
gradient instead of NaN.
"""
import jax
import jax.numpy as jnp
import numpy as np

# Squared lengths below this count as zero in ``safe_normalize``.
NORM_EPS = 1e-24


def safe_normalize(v, axis=-1):
  """``v / |v|`` along ``axis``; exactly 0 (with finite, zero gradient) where ``|v|^2 <= NORM_EPS``."""
  sq = jnp.sum(v * v, axis=axis, keepdims=True)
  ok = sq > NORM_EPS
  inv = jnp.where(ok, 1.0 / jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)
  return v * inv


@jax.jit
def face_normals(vertices, triangles):
  """Unit face normals ``(..., F, 3)`` of ``(..., N, 3)`` vertices and ``(F, 3)`` triangles."""
  vertices = jnp.asarray(vertices)
  tri = jnp.asarray(triangles, jnp.int32)
  v1 = jnp.take(vertices, tri[:, 0], axis=-2)
  v2 = jnp.take(vertices, tri[:, 1], axis=-2)
  v3 = jnp.take(vertices, tri[:, 2], axis=-2)
  return safe_normalize(jnp.cross(v1 - v2, v2 - v3))


@jax.jit
def vertex_normals(vertices, triangles, vertex_faces):
  """Unit vertex normals ``(..., N, 3)``: normalised sum of adjacent unit face normals.

  ``vertex_faces`` is ``(N, K)`` int, the faces around each vertex padded with -1 (see
  ``build_vertex_faces``). Padding and degenerate faces contribute zero; an isolated vertex gets 0.
  """
  fn = face_normals(vertices, triangles)
  num_faces = fn.shape[-2]
  pad = jnp.zeros(fn.shape[:-2] + (1, 3), fn.dtype)
  fn = jnp.concatenate([fn, pad], axis=-2)
  vf = jnp.asarray(vertex_faces, jnp.int32)
  vf = jnp.where(vf < 0, num_faces, vf)
  gathered = jnp.take(fn, vf.reshape(-1), axis=-2)
  gathered = gathered.reshape(fn.shape[:-2] + vf.shape + (3,))
  return safe_normalize(jnp.sum(gathered, axis=-2))


def build_vertex_faces(triangles, num_vertices):
  """Faces adjacent to each vertex: ``(N, K) int32`` padded with -1, K the largest valence (numpy).

  Within a row the faces are in increasing face order.
  """
  tri = np.asarray(triangles, np.int64)
  faces = np.repeat(np.arange(len(tri)), 3)
  verts = tri.reshape(-1)
  return _ragged_to_padded(verts, faces, num_vertices)


def vertex_neighbours(triangles, num_vertices):
  """Vertices sharing an edge with each vertex: ``(N, D) int32`` padded with -1 (numpy, static).

  Used by the uniform Laplacian of the smoothness loss (Eq 16). Rows are sorted and unique.
  """
  tri = np.asarray(triangles, np.int64)
  a = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2], tri[:, 1], tri[:, 2], tri[:, 0]])
  b = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0], tri[:, 0], tri[:, 1], tri[:, 2]])
  pairs = np.unique(np.stack([a, b], 1), axis=0)
  pairs = pairs[pairs[:, 0] != pairs[:, 1]]
  return _ragged_to_padded(pairs[:, 0], pairs[:, 1], num_vertices)


def _ragged_to_padded(keys, values, num_rows):
  """Groups ``values`` by ``keys`` into a ``(num_rows, max_count)`` int32 table padded with -1."""
  keys = np.asarray(keys, np.int64)
  values = np.asarray(values, np.int64)
  if keys.size and (keys.min() < 0 or keys.max() >= num_rows):
    raise ValueError(f"triangle vertex index out of range [0, {num_rows})")
  order = np.lexsort((values, keys))
  keys, values = keys[order], values[order]
  counts = np.bincount(keys, minlength=num_rows)
  width = max(int(counts.max()) if counts.size else 0, 1)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  col = np.arange(len(keys)) - starts[keys]
  out = np.full((num_rows, width), -1, np.int32)
  out[keys, col] = values
  return out
