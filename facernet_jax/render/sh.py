"""Spherical-harmonics Lambertian shading (Eq 6) with Deng et al.'s constants and ordering."""
import math

import jax
import jax.numpy as jnp

# Lambertian kernel factors a_l and SH normalisation constants c_l (Deng et al., Deep3DFaceRecon).
A = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))
C = (1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi),
     3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi))
# Added to coefficient 0 of each colour so that zero lighting coefficients mean ambient light 0.8.
AMBIENT = 0.8


@jax.jit
def sh_basis(normals):
  """The 9 shading basis values H_b(n) of Eq 6 (bands 0-2, Deng's order and signs): ``(..., 3) -> (..., 9)``."""
  normals = jnp.asarray(normals)
  nx, ny, nz = normals[..., 0], normals[..., 1], normals[..., 2]
  a0c0, a1c1, a2c2 = A[0] * C[0], A[1] * C[1], A[2] * C[2]
  return jnp.stack([
      jnp.full_like(nx, a0c0),
      -a1c1 * ny,
      a1c1 * nz,
      -a1c1 * nx,
      a2c2 * nx * ny,
      -a2c2 * ny * nz,
      a2c2 / (2.0 * math.sqrt(3.0)) * (3.0 * nz * nz - 1.0),
      -a2c2 * nx * nz,
      a2c2 / 2.0 * (nx * nx - ny * ny),
  ], axis=-1)


@jax.jit
def shade(albedo, normals, lighting):
  """Vertex colours ``C = t * sum_b gamma_b H_b(n)`` (Eq 6).

  Args:
    albedo: ``(B, N, 3)`` in [0, 1].
    normals: ``(B, N, 3)`` unit normals.
    lighting: ``(B, 27)`` SH coefficients, read as (3 colours, 9); ``AMBIENT`` is added to coefficient 0
      of each colour.
  Returns:
    ``(B, N, 3)`` shaded colours (not clipped).
  """
  lighting = jnp.asarray(lighting)
  gamma = lighting.reshape(lighting.shape[:-1] + (3, 9))
  gamma = gamma.at[..., 0].add(AMBIENT)
  irradiance = jnp.einsum("...nk,...ck->...nc", sh_basis(normals), gamma)
  return jnp.asarray(albedo) * irradiance
