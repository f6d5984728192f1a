"""The 3DMM layer (Eqs 1-4): coefficients -> vertices and albedo, with trainable FC bases."""
import weakref

import flax.linen as nn
import jax
import jax.numpy as jnp

from facernet_jax.face_model.model import MorphableModel

# One device copy of each model's constant arrays, so a jitted function captures each array once.
_DEVICE_CACHE = weakref.WeakKeyDictionary()


def _device_arrays(model):
  arrays = _DEVICE_CACHE.get(model)
  if arrays is None:
    with jax.ensure_compile_time_eval():  # concrete arrays even when first called inside a trace
      arrays = {
          "mean_shape": jnp.asarray(model.mean_shape.reshape(-1)),
          "mean_albedo": jnp.asarray(model.mean_albedo.reshape(-1)),
          "expression_basis": jnp.asarray(model.expression_basis.T),
          "shape_basis": jnp.asarray(model.shape_basis.T),
          "texture_basis": jnp.asarray(model.texture_basis.T),
      }
    _DEVICE_CACHE[model] = arrays
  return arrays


def _basis_init(basis_t):
  def init(key, shape, dtype=jnp.float32):
    del key
    assert tuple(shape) == basis_t.shape, (shape, basis_t.shape)
    return jnp.asarray(basis_t, dtype)
  return init


class MorphableModelLayer(nn.Module):
  """Shape and albedo from 3DMM coefficients (Eqs 1-4).

  ``S = S_mean + FC_shape(alpha) + E_exp delta`` (Eq 3) and ``T = T_mean + FC_texture(beta)`` (Eq 4).
  ``FC_shape`` (Ks, 3N) and ``FC_texture`` (Kt, 3N) are bias-free fully connected layers initialised
  with the PCA bases E_shape and E_tex (so at initialisation this is exactly Eqs 1-2); the mean plays the
  role of the bias, so none is added. The expression basis E_exp stays fixed, as in the paper.
  With ``trainable_bases=False`` the PCA bases are constants: the plain linear 3DMM (ablations).

  Returns ``(vertices (B, N, 3), albedo (B, N, 3))``.
  """
  model: MorphableModel
  trainable_bases: bool = True

  @nn.compact
  def __call__(self, shape, texture, expression):
    m = self.model
    consts = _device_arrays(m)
    n = m.num_vertices
    if self.trainable_bases:
      # Initialised from numpy (not from the device cache) so that init does not trace a constant.
      shape_w = self.param("FC_shape", _basis_init(m.shape_basis.T), (m.num_shape, 3 * n))
      tex_w = self.param("FC_texture", _basis_init(m.texture_basis.T), (m.num_texture, 3 * n))
    else:
      shape_w, tex_w = consts["shape_basis"], consts["texture_basis"]
    shape = jnp.asarray(shape, jnp.float32)
    texture = jnp.asarray(texture, jnp.float32)
    expression = jnp.asarray(expression, jnp.float32)
    hp = jax.lax.Precision.HIGHEST
    s = (consts["mean_shape"] + jnp.matmul(shape, shape_w, precision=hp)
         + jnp.matmul(expression, consts["expression_basis"], precision=hp))
    t = consts["mean_albedo"] + jnp.matmul(texture, tex_w, precision=hp)
    batch = s.shape[:-1]
    return s.reshape(batch + (n, 3)), t.reshape(batch + (n, 3))
