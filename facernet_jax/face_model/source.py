"""The face model a config names: `face_model.source` is 'synthetic' or a model file (our .npz or
Deep3DFaceRecon's BFM_model_front.mat). Above both the file readers and the synthetic model."""
import os

from facernet_jax.face_model import formats
from facernet_jax.face_model import synthetic


def from_config(cfg):
  """Builds the model named by a config: ``cfg.source == 'synthetic'`` (with ``cfg.resolution``,
  ``cfg.seed``) or a path to a ``.npz`` / ``BFM_model_front.mat``."""
  source = cfg.source if not isinstance(cfg, dict) else cfg["source"]
  get = (lambda k, d: cfg.get(k, d)) if hasattr(cfg, "get") else (lambda k, d: getattr(cfg, k, d))
  if source == "synthetic":
    return synthetic.build_synthetic_model(int(get("resolution", 48)), int(get("seed", 0)))
  path = os.path.expanduser(os.fspath(source))
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"face model file not found: {path!r} (config face_model.source). Put there either a .npz made by "
        "`python -m facernet_jax.face_model.convert --bfm 01_MorphableModel.mat --expression Exp_Pca.bin "
        "--index-dir DIR --out model.npz` from the BFM 2009 (request it from the University of Basel) or "
        "Deep3DFaceRecon's BFM_model_front.mat; or set face_model.source = 'synthetic'.")
  return formats.load_model(path)
