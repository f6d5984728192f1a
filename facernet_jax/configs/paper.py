"""The paper's setting (Sec 3.4, 4.1): BFM, 300W-LP + CelebA, 64x64 inputs, Adam 1e-3, batch 4.

Needs data you bring (README "Data you bring"; the commands are in docs/data_and_losses.md, "The
paper config, step by step"): the converted BFM 2009 with all 199 shape / texture components, and
300W-LP + CelebA (68 landmarks) for training, AFLW2000-3D and AFLW-LFPA for evaluation, all in one
folder given as --config.dataset.manual_dir. Loss weights are
Eq 11's: 400 / 2000 / 100 / 2 / 50 / 1; L_land_error starts after the fifth epoch.
"""
import ml_collections

from facernet_jax.configs import default


def get_config():
  """Returns the paper configuration."""
  config = default.get_config()
  config.image_size = 64
  config.face_model.source = 'bfm_front_199.npz'  # Path; see README "Data you bring".
  config.model.width = 1.0
  config.model.use_attention = True
  config.model.use_multiscale = True
  config.model.use_decoder = True
  config.model.coord_channels = False  # the paper's network has no coordinate channels
  config.model.output_scales = ml_collections.ConfigDict()  # the paper's head has no output scales
  config.model.appearance_branch = False  # the paper regresses all 495 numbers from one trunk
  config.model.depthwise = 'auto'  # implementation only (same numbers): see configs/default.py
  config.reg_weights = ml_collections.ConfigDict(
      {'shape': 2e-5, 'texture': 2e-2, 'expression': 4e-4})  # Eq 17 as published
  config.trainable_bases = True
  # The paper renders with Deng et al.'s renderer [8] (hard rasterisation + interpolation), which
  # 'hard' mode reproduces; 'soft' adds SoftRas silhouette gradients at ~5x the cost.
  config.raster.mode = 'hard'
  config.render_geometry_gradient = True  # Eq 11 trains everything jointly through the render

  config.dataset.name = 'w300lp+celeba68'
  # The folder holding 300W_LP/, img_align_celeba/ + celeba_68.csv, AFLW2000/ and AFLW_LFPA/ as
  # downloaded (docs/data_and_losses.md); '' = <data_dir>/downloads/manual/.
  config.dataset.manual_dir = ''
  # 300W-LP : CelebA sampling weights; () = proportional to their sizes (61,225 : 202,599), the
  # mixture the paper's concatenated training set implies, now interleaved example by example.
  config.dataset.weights = ()
  config.dataset.train_split = 'train'
  # dataset.eval_split / test_split are not used: the paper has no validation split and evaluates,
  # during training and at the end, on its test datasets (config.eval_datasets).
  # Evaluation datasets (during training every eval_every_steps, and at the end): their own
  # datasets, not splits of the training mixture. points 68 = the model's landmarks; 34 = the
  # AFLW-LFPA points, read off the face-model vertices in vertex_file (docs/evaluation.md).
  config.eval_datasets = ml_collections.ConfigDict()
  config.eval_datasets.aflw2000_3d = ml_collections.ConfigDict(dict(
      name='aflw2000_3d', split='test', points=68, protocol='aflw2000_3d', manual_dir=''))
  config.eval_datasets.aflw_lfpa = ml_collections.ConfigDict(dict(
      name='aflw_lfpa', split='test', points=34, protocol='lfpa', manual_dir='',
      vertex_file='lfpa_34_vertices.npy'))
  config.dataset.augment = True  # Sec 4.1: flip / rotation (p = 0.5 each), colour x U(0.6, 1.2).
  config.dataset.synthetic = None

  config.loss_weights.land = 400.0
  config.loss_weights.land_error = 2000.0
  config.loss_weights.photo = 100.0
  config.loss_weights.ssim = 2.0
  config.loss_weights.smooth = 50.0
  config.loss_weights.reg = 1.0
  config.land_error_start_epoch = 5

  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  # The paper trains the 3DMM layer (FC_shape / FC_texture) with the same Adam but does not say in
  # which units its weights are. Adam's step is ~lr per entry whatever the units, and here the
  # bases' entries are ~1e-3 (median |FC_shape| 8.6e-4 at BFM size), so at scale 1.0 the first step
  # alone moves a median entry by more than its size and erases the PCA bases (and the scrambled
  # mesh's large triangles made the hard rasteriser 4x slower per step within 6 steps). 1e-3
  # gives the bases the relative step the rest of the network gets (docs/training.md).
  config.decoder_lr_scale = 1e-3
  config.lr_schedule = 'constant'
  config.warmup_steps = 0
  config.grad_clip_norm = 0.0
  config.batch_size = 4
  config.num_epochs = 20.0  # Not stated in the paper.
  config.num_train_steps = -1  # num_epochs decides.

  config.log_every_steps = 100
  config.eval_every_steps = 10_000
  config.image_every_steps = 2_000
  config.checkpoint_every_steps = 5_000
  config.target_nme = 3.5  # Not a paper number: Table 2 reports ~3.3-5.4 % by yaw bin.
  config.target_psnr = 25.0
  return config
