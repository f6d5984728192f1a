"""The morphable face model: container (model.py), file formats (formats.py), the embedded synthetic model
(synthetic.py), the model a config names (source.py), the 3DMM layer (layer.py)."""
from facernet_jax.face_model.layer import MorphableModelLayer
from facernet_jax.face_model.formats import load_model
from facernet_jax.face_model.model import ModelFormatError
from facernet_jax.face_model.model import MorphableModel
from facernet_jax.face_model.source import from_config
from facernet_jax.face_model.synthetic import build_synthetic_model

__all__ = [
    "MorphableModel", "MorphableModelLayer", "ModelFormatError", "build_synthetic_model", "from_config",
    "load_model",
]
