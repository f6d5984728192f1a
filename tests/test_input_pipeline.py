"""Tests of facernet_jax.input_pipeline: dataset selection from the training config."""
import pytest

from facernet_jax import input_pipeline
from facernet_jax.configs import test as test_config


def test_synthetic_dataset_config_follows_the_training_config():
  c = test_config.get_config()
  values = input_pipeline.synthetic_dataset_config(c)
  assert (values['image_size'], values['model_resolution'], values['model_seed']) == (
      c.image_size, c.face_model.resolution, c.face_model.seed)
  c.dataset.synthetic.image_size = c.image_size + 1
  with pytest.raises(ValueError, match='same face model and size'):
    input_pipeline.synthetic_dataset_config(c)
