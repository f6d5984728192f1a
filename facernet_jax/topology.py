"""Static triangle-mesh adjacency tables (numpy): faces around each vertex, edge neighbours of each vertex.

Shared by the face model (its `vertex_faces` field), the renderer's vertex normals and the smoothness
loss (Eq 16), so it sits below all of them.
"""
import numpy as np


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
