"""The morphable face model: container, file formats, the embedded synthetic model, the 3DMM layer."""
from facernet_jax.face_model.layer import MorphableModelLayer
from facernet_jax.face_model.model import load_model
from facernet_jax.face_model.model import ModelFormatError
from facernet_jax.face_model.model import MorphableModel
from facernet_jax.face_model.model import from_config
from facernet_jax.face_model.synthetic import build_synthetic_model

__all__ = [
    "MorphableModel", "MorphableModelLayer", "ModelFormatError", "build_synthetic_model", "from_config",
    "load_model",
]
