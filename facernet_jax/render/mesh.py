"""Mesh utilities: face / vertex normals (for Eq 6); the static adjacency tables come from facernet_jax.topology.

Normals follow Deng et al.: ``n_f = normalise((v1 - v2) x (v2 - v3))``, which points towards the viewer
for triangles listed counter-clockwise as seen by the camera (the BFM's order, and the synthetic model's),
so normals on the front of the face point out of the head (+z). A vertex normal is the normalised sum of
the unit normals of its adjacent faces. Degenerate (zero-area) faces get a zero normal with zero
gradient instead of NaN.
"""
import jax
import jax.numpy as jnp

from facernet_jax.topology import build_vertex_faces
from facernet_jax.topology import vertex_neighbours

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


__all__ = ['NORM_EPS', 'build_vertex_faces', 'face_normals', 'safe_normalize', 'vertex_neighbours', 'vertex_normals']
