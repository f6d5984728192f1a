"""End-to-end tests of `python -m facernet_jax.train` as separate processes.

* kill -9 a run after its first checkpoint, restart it: its final parameters equal, bit for bit,
  those of an uninterrupted run with the same seed (Orbax resume + exact data position).
* two processes on loopback (jax.distributed, gloo CPU collectives) train a few steps and end with
  bit-identical parameters.

The runs share a persistent XLA compilation cache, so only the first run of a program compiles.
The training runs are in the slow tier (`pytest -m slow`); the bad-config checks, which stop
before anything compiles, run by default.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from facernet_jax import input_pipeline
from facernet_jax import train
from facernet_jax.configs import test as test_config

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """Environment of the child processes: 2 host devices, a shared compilation cache, the tiny
  synthetic dataset built once."""
  root = tmp_path_factory.mktemp('cli')
  data_dir = root / 'tfds'
  from facernet_jax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
  synthetic_faces.prepare_synthetic_faces(
      str(data_dir), input_pipeline.synthetic_dataset_config(test_config.get_config()))
  e = dict(os.environ)
  e.update({
      'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
      'JAX_PLATFORMS': 'cpu',
      'JAX_COMPILATION_CACHE_DIR': str(root / 'jax_cache'),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'PYTHONPATH': str(REPO) + os.pathsep + e.get('PYTHONPATH', ''),
      'TF_CPP_MIN_LOG_LEVEL': '2',
  })
  return {'env': e, 'root': root, 'data_dir': str(data_dir)}


def _cli(env, workdir, *overrides):
  return [sys.executable, '-m', 'facernet_jax.train', '--config=facernet_jax/configs/test.py',
          f'--workdir={workdir}', f'--config.dataset.data_dir={env["data_dir"]}',
          *overrides]


def _run(cmd, env, timeout=1800):
  proc = subprocess.run(cmd, cwd=REPO, env=env['env'], capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout + proc.stderr


def _complete_steps(workdir):
  d = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(env):
  overrides = ('--config.num_train_steps=10', '--config.checkpoint_every_steps=2',
               '--config.eval_every_steps=10', '--config.image_every_steps=10',
               '--config.log_every_steps=1')
  full = env['root'] / 'full'
  out = _run(_cli(env, full, *overrides), env)
  assert 'NME' in out and ('PASS' in out or 'FAIL' in out)  # The end-of-training verdict.

  killed = env['root'] / 'killed'
  proc = subprocess.Popen(_cli(env, killed, *overrides), cwd=REPO, env=env['env'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 1800
  while not _complete_steps(killed) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps = _complete_steps(killed)
  assert steps and max(steps) < 10, f'the run was not stopped mid-way (checkpoints {steps})'
  out = _run(_cli(env, killed, *overrides), env)
  assert f'resumed from step {max(steps)}' in out

  cfg_full, var_full = train.load_for_inference(full)
  cfg_killed, var_killed = train.load_for_inference(killed)
  assert cfg_full.to_dict() == cfg_killed.to_dict()
  leaves_full = jax.tree_util.tree_leaves_with_path(var_full)
  leaves_killed = jax.tree_util.tree_leaves(var_killed)
  assert len(leaves_full) == len(leaves_killed)
  for (path, a), b in zip(leaves_full, leaves_killed):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  with open(full / 'final_metrics.json') as f:
    assert json.load(f)['step'] == 10


def test_config_overrides_are_type_checked(env):
  proc = subprocess.run(_cli(env, env['root'] / 'bad', '--config.batch_size=eight'), cwd=REPO,
                        env=env['env'], capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and 'batch_size' in proc.stderr



@pytest.mark.parametrize('override, message', [
    ('--config.batch_size=-4', 'config.batch_size=-4 is not allowed: must be an integer >= 1'),
    ('--config.model.output_scales.rotation=0',
     'config.model.output_scales.rotation=0.0 is not allowed: must be a number > 0'),
    ('--config.reg_weights.shape=-1', 'config.reg_weights.shape=-1.0 is not allowed')])
def test_bad_config_values_stop_before_the_workdir_is_written(env, override, message):
  workdir = env['root'] / f'bad_{override.split(".")[-1].split("=")[0]}'
  proc = subprocess.run(_cli(env, workdir, override), cwd=REPO, env=env['env'],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-3000:]
  assert not workdir.exists()  # no config.json, events or checkpoints of a run that never began


@pytest.mark.slow
def test_resume_with_a_changed_model_is_refused(env):
  """A workdir's checkpoints belong to its config: a resume that changes a model, data or loss field
  is refused naming it (nothing written), a step-count change is fine, and --allow_config_change
  lets a loss weight change through."""
  workdir = env['root'] / 'resume_check'
  base = ('--config.num_train_steps=2', '--config.eval_every_steps=0',
          '--config.image_every_steps=0', '--config.final_test=False')
  _run(_cli(env, workdir, *base), env)
  assert _complete_steps(workdir) == [2]
  before = (workdir / 'config.json').read_text()
  proc = subprocess.run(_cli(env, workdir, *base, '--config.model.width=0.2'), cwd=REPO,
                        env=env['env'], capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert 'changed fields: model.width: 0.1 -> 0.2' in proc.stderr, proc.stderr[-3000:]
  assert (workdir / 'config.json').read_text() == before and _complete_steps(workdir) == [2]
  out = _run(_cli(env, workdir, *base[1:], '--config.num_train_steps=3',
                  '--config.loss_weights.photo=1', '--allow_config_change'), env)
  assert 'resumed from step 2' in out and 'config changes allowed: loss_weights.photo' in out
  assert _complete_steps(workdir) == [2, 3]
  assert json.loads((workdir / 'config.json').read_text())['loss_weights']['photo'] == 1.0


@pytest.mark.slow
def test_train_throughput_benchmark_runs(env):
  """experiments/train_throughput.py starts (it once died of a DuplicateFlagError), times the step
  on 1 and 2 devices and prints the breakdown."""
  proc = subprocess.run(
      [sys.executable, 'experiments/train_throughput.py', '--config=facernet_jax/configs/test.py',
       '--batch_sizes=4', '--devices=1,2', '--steps=1', '--repeats=1', '--breakdown'],
      cwd=REPO, env=env['env'], capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
  timed = [r for r in rows if 'images_per_sec' in r]
  assert [(r['devices'], r['batch_size']) for r in timed] == [(1, 4), (2, 4)]
  assert all(r['images_per_sec'] > 0 and r['s_per_step'] > 0 for r in timed)
  parts = {r['part']: r['ms'] for r in rows if 'part' in r}
  for name in ('network forward+backward', 'renderer forward+backward', 'full train step',
               'optimiser (Adam update of all parameters)', 'host: fetch metrics (one sync)'):
    assert parts[name] > 0, name


@pytest.mark.slow
def test_profile_train_step_runs(env):
  """experiments/profile_train_step.py traces the compiled step and reads the trace back: per-op
  times per step from XLA:CPU's threads, the rasteriser's selection loop among them; and it says
  how far the bases moved."""
  trace_dir = env['root'] / 'profile'
  proc = subprocess.run(
      [sys.executable, 'experiments/profile_train_step.py', '--config=facernet_jax/configs/test.py',
       '--batch_size=2', '--warmup=2', '--steps=1', '--top=400', f'--trace_dir={trace_dir}'],
      cwd=REPO, env=env['env'], capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
  assert len(rows[0]['step_s']) == 2 and all(t > 0 for t in rows[0]['step_s'])
  bases = rows[1]  # trainable FC_shape / FC_texture: still their PCA start after 3 small steps
  assert sorted(bases) == ['FC_shape', 'FC_texture'], bases
  assert all(b['median_abs_entry'] > 0 and 0 < b['median_change_over_median_entry'] < 0.05
             for b in bases.values()), bases
  ops = {r['op']: r for r in rows[2:]}
  assert ops and all(r['ms_per_step'] >= 0 and r['calls_per_step'] > 0 for r in ops.values())
  assert any('scatter' in name for name in ops), sorted(ops)  # the z-buffer's scatter-max
  assert list(trace_dir.glob('**/*.xplane.pb'))


_WORKER = r'''
import json, sys
import numpy as np
import jax
from facernet_jax import train
from facernet_jax.configs import test as test_config
pid, port, workdir, data_dir, out = sys.argv[1:6]
config = test_config.get_config()
config.distributed.initialize = True
config.distributed.coordinator_address = f'127.0.0.1:{port}'
config.distributed.num_processes = 2
config.distributed.process_id = int(pid)
config.seed = int(pid)  # Different initial parameters: process 0's must be the ones both use.
config.dataset.data_dir = data_dir
config.num_train_steps = 3
config.checkpoint_every_steps = 3
config.eval_every_steps = 3
config.image_every_steps = 0
config.final_test = False
state, result = train.train_and_evaluate(config, workdir)
leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]
np.savez(out, *leaves)
with open(out + '.json', 'w') as f:
  json.dump({'process_count': jax.process_count(), 'device_count': jax.device_count(),
             'step': int(state.step), 'eval': result['eval']}, f)
'''


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_agree(env):
  workdir = env['root'] / 'multi'
  port = _free_port()
  procs, outs = [], []
  for pid in range(2):
    out = str(env['root'] / f'multi_{pid}')
    outs.append(out)
    procs.append(subprocess.Popen(
        [sys.executable, '-c', _WORKER, str(pid), str(port), str(workdir), env['data_dir'], out],
        cwd=REPO, env=env['env'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  logs = [p.communicate(timeout=1800)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-5000:]
  infos = []
  for out in outs:
    with open(out + '.json') as f:
      infos.append(json.load(f))
  assert [i['process_count'] for i in infos] == [2, 2]
  assert [i['device_count'] for i in infos] == [4, 4]
  assert [i['step'] for i in infos] == [3, 3]
  # Evaluation metrics are gathered across processes: both see the same numbers.
  assert infos[0]['eval'] == infos[1]['eval'] and infos[0]['eval']['num_images'] == 8
  a, b = np.load(outs[0] + '.npz'), np.load(outs[1] + '.npz')
  assert a.files == b.files
  # Only process 0 writes the config, logs and the checkpoint; the checkpoint holds its params.
  assert (workdir / 'config.json').is_file()
  _, variables = train.load_for_inference(workdir)
  for x, k in zip(jax.tree_util.tree_leaves(variables['params']), a.files):
    np.testing.assert_array_equal(x, a[k])
  # Both start from process 0's parameters (their seeds differ), and the gradient mean spans both
  # processes, so their replicas stay bit-identical. (With pmap given
  # only the local devices each process averaged its own half of the batch: the parameters differed
  # by up to 6 * lr after 3 Adam steps.)
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
