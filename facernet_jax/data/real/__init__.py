"""TFDS builders for the real datasets, read from folders users download themselves.

Importing this package registers `w300lp`, `aflw2000_3d`, `celeba68` and
`aflw_lfpa` with TFDS. Each builder reads `manual_dir` (the downloaded folder;
see its MANUAL_DOWNLOAD_INSTRUCTIONS and docs/data_and_losses.md) and never
downloads anything.
"""
import tensorflow_datasets as tfds

from facernet_jax.data.real.common import LayoutError
from facernet_jax.data.real.common import RealFacesConfig
from facernet_jax.data.real.aflw2000_3d import Aflw20003d
from facernet_jax.data.real.aflw_lfpa import AflwLfpa
from facernet_jax.data.real.celeba68 import Celeba68
from facernet_jax.data.real.w300lp import W300lp


BUILDERS = {'w300lp': W300lp, 'aflw2000_3d': Aflw20003d, 'celeba68': Celeba68, 'aflw_lfpa': AflwLfpa}


def builder(name, image_size, data_dir=None, **config_overrides):
  """The (unprepared) builder of dataset `name` whose crops are `image_size` pixels.

  A 'sizeN' config (64, 120, 224) when one matches and nothing is overridden, else a custom one
  named after its fields: the crop size always follows the caller, never a default variant.
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown real dataset {name!r}; choose from {sorted(BUILDERS)}')
  cls = BUILDERS[name]
  names = {c.image_size: c.name for c in cls.BUILDER_CONFIGS}
  if not config_overrides and image_size in names:
    config = names[image_size]
  else:
    config = cls.make_config(int(image_size), **config_overrides)
  return cls(data_dir=data_dir, config=config)


def prepare(name, manual_dir, data_dir=None, image_size=None, **config_overrides):
  """Builds dataset `name` from `manual_dir` (None: TFDS's <data_dir>/downloads/manual); returns the
  prepared builder. `image_size` picks a 'sizeN' config (64, 120, 224) or makes a custom one
  (default 120)."""
  b = builder(name, image_size or 120, data_dir, **config_overrides)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir) if manual_dir else None))
  return b
