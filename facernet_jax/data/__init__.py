"""Data: image reading, TFDS builders, augmentation, pipeline (the 68-point conventions are facernet_jax.landmarks).

Kept light on purpose: importing `facernet_jax.data.image_io` (or the old name `facernet_jax.data.landmarks`)
must not import TensorFlow. Import the builders
(`facernet_jax.data.real`, `facernet_jax.data.synthetic_faces`) and
`facernet_jax.data.pipeline` explicitly.
"""
