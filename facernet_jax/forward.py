"""The decoder half of Mobile-FaceRNet: 495 coefficients -> mesh, landmarks, shading, render.

``FaceDecoder`` glues the stages of the data flow (docs/architecture.md) together:
split (Eq 10) -> 3DMM layer (Eqs 1-4) -> rotation + translation + projection (Eq 5)
-> 68 landmarks -> vertex normals -> SH shading (Eq 6) -> optional rasterisation.
Training, evaluation, reconstruction and the synthetic dataset all call it.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from facernet_jax import render as render_lib
from facernet_jax.coefficients import split_coefficients
from facernet_jax.face_model import MorphableModel
from facernet_jax.face_model import MorphableModelLayer
from facernet_jax.render import camera as camera_lib
from facernet_jax.render import mesh as mesh_lib
from facernet_jax.render import sh as sh_lib


class FaceDecoder(nn.Module):
  """Coefficients (B, 495) -> dict of geometry, landmarks, colours and (optionally) a render.

  Attributes:
    face_model: the morphable model (numpy arrays; static).
    image_size: side of the square image in pixels; the camera is
      ``Camera.for_image_size(image_size)`` (Deng's camera scaled).
    trainable_bases: whether ``FC_shape`` / ``FC_texture`` are trained (Sec 3.3).
    raster: rasteriser settings; None skips rendering (landmark-only use).
    render_geometry_gradient: whether the render passes gradients to the geometry (shape,
      expression, pose, FC_shape). False (beyond the paper) lets the photometric terms train only
      the appearance (texture, lighting, FC_texture); landmarks and vertices keep their gradients.
  """
  face_model: MorphableModel
  image_size: int
  trainable_bases: bool = True
  raster: Optional[Any] = None
  render_geometry_gradient: bool = True

  @property
  def camera(self):
    return camera_lib.Camera.for_image_size(self.image_size)

  @nn.compact
  def __call__(self, coefficients):
    """Returns ``vertices`` (B,N,3) model space, ``vertices_cam``, ``screen`` (B,N,3) = (x_px, y_px,
    view depth), ``landmarks`` (B,68,2) px, ``albedo``, ``normals`` (camera space), ``colours``
    (shaded, Eq 6), ``rotation`` (B,3,3) and, with ``raster``, ``render`` (RenderOutput)."""
    model = self.face_model
    parts = split_coefficients(coefficients)
    # Eqs 1-4: S = S_mean + FC_shape(alpha) + E_exp delta, T = T_mean + FC_tex(beta).
    vertices, albedo = MorphableModelLayer(
        model, trainable_bases=self.trainable_bases, name='morphable_model')(
            parts['shape'], parts['texture'], parts['expression'])
    # Eq 5: v_cam = R v + m, q = Pi(v_cam).
    rotation = camera_lib.euler_to_rotation(parts['rotation'])
    vertices_cam = camera_lib.transform(vertices, rotation, parts['translation'])
    screen = camera_lib.project(vertices_cam, self.camera)
    landmark_indices = jnp.asarray(np.asarray(model.landmark_indices), jnp.int32)
    landmarks = jnp.take(screen[..., :2], landmark_indices, axis=-2)
    # Normals of the model-space mesh, rotated with the mesh (translation does not change them).
    normals = mesh_lib.vertex_normals(vertices, jnp.asarray(model.triangles),
                                      jnp.asarray(model.vertex_faces))
    normals = normals @ jnp.swapaxes(rotation, -1, -2)
    # Eq 6: C = albedo * sum_b gamma_b H_b(n).
    colours = sh_lib.shade(albedo, normals, parts['lighting'])
    out = dict(vertices=vertices, vertices_cam=vertices_cam, screen=screen, landmarks=landmarks,
               albedo=albedo, normals=normals, colours=colours, rotation=rotation)
    if self.raster is not None:
      if not self.render_geometry_gradient:
        screen = jax.lax.stop_gradient(screen)
        colours = sh_lib.shade(albedo, jax.lax.stop_gradient(normals), parts['lighting'])
      out['render'] = render_lib.render_mesh(screen, jnp.asarray(model.triangles), colours,
                                             self.raster)
    return out
