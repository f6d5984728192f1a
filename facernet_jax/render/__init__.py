"""Differentiable rendering: camera, mesh normals, SH shading and the soft / hard rasteriser (exact
(pixel, face) pairs in fixed-size chunks, no tiles; docs/renderer.md)."""
from facernet_jax.render import camera as camera_lib
from facernet_jax.render.rasterize import Fragments
from facernet_jax.render.rasterize import RasterSettings
from facernet_jax.render.rasterize import RenderOutput
from facernet_jax.render.rasterize import interpolate
from facernet_jax.render.rasterize import rasterize
from facernet_jax.render.rasterize import render_mesh
from facernet_jax.render.rasterize import soft_blend


def render(vertices_cam, triangles, colours, camera, settings):
  """Projects camera-space vertices with `camera.project` and renders (B,N,C) colours -> RenderOutput."""
  return render_mesh(camera_lib.project(vertices_cam, camera), triangles, colours, settings)


__all__ = ['Fragments', 'RasterSettings', 'RenderOutput', 'interpolate', 'rasterize', 'render',
           'render_mesh', 'soft_blend']
