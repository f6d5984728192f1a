"""Ablation variants (Tables 4-6, Fig 7): one change to the full default (or paper) config.

  --config=facernet_jax/configs/ablation.py:no_attention
  --config=facernet_jax/configs/ablation.py:paper,no_smooth

Variants: no_attention, no_multiscale, no_decoder, frozen_3dmm (FC_shape / FC_texture fixed at the
PCA bases), and no_<term> for every Eq 11 term (land, land_error, photo, ssim, smooth, reg).
"""
from facernet_jax.configs import default
from facernet_jax.configs import paper

TERMS = ('land', 'land_error', 'photo', 'ssim', 'smooth', 'reg')
VARIANTS = ('no_attention', 'no_multiscale', 'no_decoder', 'frozen_3dmm') + tuple(
    f'no_{t}' for t in TERMS)


def apply_variant(config, variant):
  """Applies one ablation `variant` to `config` in place and returns it."""
  if variant == 'no_attention':
    config.model.use_attention = False
  elif variant == 'no_multiscale':
    config.model.use_multiscale = False
  elif variant == 'no_decoder':
    config.model.use_decoder = False
  elif variant == 'frozen_3dmm':
    config.trainable_bases = False
  elif variant.startswith('no_') and variant[3:] in TERMS:
    setattr(config.loss_weights, variant[3:], 0.0)
  else:
    raise ValueError(f'unknown ablation variant {variant!r}; choose from {VARIANTS}')
  config.ablation = variant
  return config


def base_config(name='default'):
  """The full model each variant removes one part from: the paper config, or the laptop default with
  every module on (the default itself turns the multiscale module off for speed)."""
  if name == 'paper':
    return paper.get_config()
  config = default.get_config()
  config.model.use_multiscale = True
  return config


def get_config(arg='no_attention'):
  """`arg`: 'variant' (on the full default model) or 'paper,variant'."""
  parts = [p.strip() for p in arg.split(',') if p.strip()]
  base = 'default'
  if parts and parts[0] in ('paper', 'default'):
    base = parts.pop(0)
  if len(parts) != 1:
    raise ValueError(f"expected 'variant' or 'paper,variant', got {arg!r}")
  return apply_variant(base_config(base), parts[0])
