"""facernet_jax: Mobile-FaceRNet in JAX/Flax."""
