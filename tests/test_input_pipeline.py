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


def test_evaluation_sets_are_their_own_config_entries():
  from facernet_jax.configs import paper  # pylint: disable=g-import-not-at-top
  c = test_config.get_config()  # no eval_datasets: the training dataset's eval / test splits
  assert [(s.label, s.split, s.points) for s in input_pipeline.eval_sets(c, ['b'], 'eval')] == [
      ('validation', 'validation', 68)]
  assert input_pipeline.eval_sets(c, ['b'], 'test')[0].split == 'test'
  c = paper.get_config()
  assert {k: (e.name, e.split, e.points, e.protocol) for k, e in c.eval_datasets.items()} == {
      'aflw2000_3d': ('aflw2000_3d', 'test', 68, 'aflw2000_3d'),
      'aflw_lfpa': ('aflw_lfpa', 'test', 34, 'lfpa')}
  c.eval_datasets.aflw_lfpa.vertex_file = '/nonexistent/lfpa34.npy'
  with pytest.raises(FileNotFoundError, match='lfpa_points --model'):
    input_pipeline.eval_sets(c, [], 'eval')
  c.eval_datasets.aflw_lfpa.points = 68
  with pytest.raises(ValueError, match="protocol 'lfpa' goes with 34 points"):
    input_pipeline.eval_sets(c, [], 'eval')
  c.eval_datasets.aflw_lfpa.protocol = 'nme'
  with pytest.raises(ValueError, match=r'aflw_lfpa.protocol=.nme.; choose from'):
    input_pipeline.eval_sets(c, [], 'eval')
