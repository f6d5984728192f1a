"""TFDS builders for the real datasets, read from folders users download themselves.

Importing this package registers `w300lp`, `aflw2000_3d`, `celeba68` and
`aflw_lfpa` with TFDS. Each builder reads `manual_dir` (the downloaded folder;
see its MANUAL_DOWNLOAD_INSTRUCTIONS and docs/data_and_losses.md) and never
downloads anything.
"""
from facernet_jax.data.real.common import LayoutError
from facernet_jax.data.real.common import RealFacesConfig
from facernet_jax.data.real.aflw2000_3d import Aflw20003d
from facernet_jax.data.real.aflw_lfpa import AflwLfpa
from facernet_jax.data.real.celeba68 import Celeba68
from facernet_jax.data.real.w300lp import W300lp


def prepare(name, manual_dir, data_dir=None, image_size=None, **config_overrides):
  """Builds dataset `name` from `manual_dir`; returns the prepared builder.

  `image_size` picks a 'sizeN' config (64, 120, 224) or makes a custom one.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cls = {'w300lp': W300lp, 'aflw2000_3d': Aflw20003d, 'celeba68': Celeba68,
         'aflw_lfpa': AflwLfpa}[name]
  kwargs = {}
  if config_overrides:
    kwargs['config'] = cls.make_config(image_size or 120, **config_overrides)
  elif image_size is not None:
    names = {c.image_size: c.name for c in cls.BUILDER_CONFIGS}
    kwargs['config'] = names.get(image_size) or cls.make_config(image_size)
  builder = cls(data_dir=data_dir, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder
