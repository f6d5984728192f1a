"""Rotations, the pinhole camera and perspective projection (Eq 5).

Conventions (docs/architecture.md, after Deng et al.'s Deep3DFaceRecon): Euler angles
``(pitch_x, yaw_y, roll_z)`` in radians, ``R = Rz @ Ry @ Rx``; camera at ``z = camera_distance``
looking down -z; ``v_cam = v @ R.T + t``; view depth ``d = camera_distance - v_cam_z``;
``x = f * v_cam_x / d + cx`` and ``y = cy - f * v_cam_y / d`` in continuous pixels (y down).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp

# Deng et al. use focal 1015 px and principal point 112 px for 224 px crops.
REFERENCE_FOCAL = 1015.0
REFERENCE_SIZE = 224.0
DEFAULT_CAMERA_DISTANCE = 10.0
# Depths closer than this are clamped in the perspective division (keeps values and gradients finite).
MIN_DEPTH = 1e-3


@jax.jit
def euler_to_rotation(angles):
  """Rotation matrices ``Rz @ Ry @ Rx`` from ``(..., 3)`` angles (pitch_x, yaw_y, roll_z) in radians."""
  angles = jnp.asarray(angles)
  x, y, z = angles[..., 0], angles[..., 1], angles[..., 2]
  cx, sx = jnp.cos(x), jnp.sin(x)
  cy, sy = jnp.cos(y), jnp.sin(y)
  cz, sz = jnp.cos(z), jnp.sin(z)
  one, zero = jnp.ones_like(x), jnp.zeros_like(x)
  rx = jnp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
  ry = jnp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
  rz = jnp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
  shape = angles.shape[:-1] + (3, 3)
  return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def _safe_atan2(y, x):
  """``arctan2`` whose value and gradient are 0 (not NaN) at the origin."""
  ok = (y * y + x * x) > 0
  return jnp.where(ok, jnp.arctan2(jnp.where(ok, y, 0.0), jnp.where(ok, x, 1.0)), 0.0)


@functools.partial(jax.jit, static_argnames="gimbal_eps")
def rotation_to_euler(rotation, gimbal_eps=1e-6):
  """Inverse of ``euler_to_rotation``: ``(..., 3, 3) -> (..., 3)`` radians (pitch, yaw, roll).

  Yaw is in [-pi/2, pi/2]. At gimbal lock (|yaw| = pi/2) roll is set to 0 and pitch absorbs it.
  """
  r = jnp.asarray(rotation)
  r00, r10, r20 = r[..., 0, 0], r[..., 1, 0], r[..., 2, 0]
  r21, r22 = r[..., 2, 1], r[..., 2, 2]
  r01, r11 = r[..., 0, 1], r[..., 1, 1]
  sq = r00 * r00 + r10 * r10
  cos_yaw = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)  # NaN-free gradient at 0
  yaw = _safe_atan2(-r20, cos_yaw)
  locked = cos_yaw < gimbal_eps
  pitch = jnp.where(locked, _safe_atan2(jnp.sign(-r20) * r01, r11), _safe_atan2(r21, r22))
  roll = jnp.where(locked, 0.0, _safe_atan2(r10, r00))
  return jnp.stack([pitch, yaw, roll], -1)


def rotation_to_euler_degrees(rotation):
  """``(..., 3, 3) -> (..., 3)`` (pitch, yaw, roll) in degrees, for user-facing output."""
  return jnp.rad2deg(rotation_to_euler(rotation))


@dataclasses.dataclass(frozen=True)
class Camera:
  """Pinhole camera of Deng et al. scaled to ``image_size`` (square images, continuous pixels)."""
  focal: float
  cx: float
  cy: float
  camera_distance: float = DEFAULT_CAMERA_DISTANCE
  image_size: int = 224

  @classmethod
  def for_image_size(cls, image_size, camera_distance=DEFAULT_CAMERA_DISTANCE):
    """Focal ``1015 * S / 224`` and principal point ``(S/2, S/2)``: Deng's camera at any size."""
    s = float(image_size)
    return cls(focal=REFERENCE_FOCAL * s / REFERENCE_SIZE, cx=s / 2.0, cy=s / 2.0,
               camera_distance=float(camera_distance), image_size=int(image_size))


@jax.jit
def transform(vertices, rotation_matrix, translation):
  """Rigid transform ``v @ R.T + t`` (the ``R p + m`` of Eq 5) for ``(..., N, 3)`` vertices.

  ``rotation_matrix`` is ``(..., 3, 3)`` and ``translation`` ``(..., 3)`` with matching batch dims.
  """
  vertices = jnp.asarray(vertices)
  rt = jnp.swapaxes(jnp.asarray(rotation_matrix), -1, -2)
  return vertices @ rt + jnp.asarray(translation)[..., None, :]


@functools.partial(jax.jit, static_argnames="camera")
def project(v_cam, camera):
  """Perspective projection Pi of Eq 5: ``(..., N, 3)`` -> ``(..., N, 3)`` = (x_px, y_px, view_depth).

  The depth is clamped to ``MIN_DEPTH`` only inside the division; the returned depth is the true one
  (negative behind the camera) so that the rasteriser can cull.
  """
  v_cam = jnp.asarray(v_cam)
  depth = camera.camera_distance - v_cam[..., 2]
  safe = jnp.maximum(depth, MIN_DEPTH)
  x = camera.focal * v_cam[..., 0] / safe + camera.cx
  y = camera.cy - camera.focal * v_cam[..., 1] / safe
  return jnp.stack([x, y, depth], -1)
