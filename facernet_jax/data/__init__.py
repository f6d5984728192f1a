"""Data: landmark conventions, image reading, TFDS builders, augmentation, pipeline.

Kept light on purpose: importing `facernet_jax.data.landmarks` or
`facernet_jax.data.image_io` must not import TensorFlow. Import the builders
(`facernet_jax.data.real`, `facernet_jax.data.synthetic_faces`) and
`facernet_jax.data.pipeline` explicitly.
"""
