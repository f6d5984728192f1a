"""Tiny config for tests and the CI notebook: 32 px, a 12-ring face model, a narrow network.

Compiles and trains in seconds on a CPU; it learns nothing useful.
"""
from facernet_jax.configs import default


def get_config():
  """The default config shrunk for tests."""
  config = default.get_config()
  config.image_size = 32
  config.face_model.resolution = 12
  config.model.width = 0.1
  # Fewer ops to compile: the tests are about training, not the network's modules.
  config.model.use_multiscale = False
  config.model.use_attention = False
  # Values the tests were written against (the laptop default has since been retuned).
  config.raster.mode = 'soft'
  config.learning_rate = 2e-3
  config.loss_weights.land = 400.0
  config.loss_weights.land_error = 2000.0
  config.eval_every_steps = 4
  config.raster.faces_per_pixel = 4
  config.dataset.synthetic.num_train = 16
  config.dataset.synthetic.num_validation = 8
  config.dataset.synthetic.num_test = 8
  config.batch_size = 8
  config.num_train_steps = 4
  config.warmup_steps = 0
  config.lr_schedule = 'constant'
  config.land_error_start_epoch = 1
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.image_every_steps = 4
  config.num_summary_images = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 2
  config.report = False  # tests/test_report.py turns it on
  return config
