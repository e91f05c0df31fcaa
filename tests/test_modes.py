"""explore, eval and predict on the tiny config and synthetic data."""

import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT, synthetic_split
from configs import tiny
from mnist_jax import config_lib, evaluate, explore, input_pipeline, plots, predict, train
from mnist_jax import workdir as workdir_lib
from mnist_jax.errors import UserError

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def grey_pixels(path):
  with Image.open(path) as image:
    return np.asarray(image.convert('L'))


def assert_png(path):
  """A PNG with something drawn in it: a blank figure (every pixel the background,
  as after a stray fig.clf()) fails."""
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_SIGNATURE, path
  pixels = grey_pixels(path)
  background = np.bincount(pixels.ravel()).argmax()
  assert (pixels != background).mean() > 0.002, path  # A title alone: ~0.7%.


@pytest.fixture(scope='module')
def data():
  return {'train': synthetic_split(640, seed=0), 'test': synthetic_split(203, seed=1)}


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
  config = tiny.get_config()
  config.train_steps_per_epoch = 10
  workdir = str(tmp_path_factory.mktemp('trained'))
  train.train_and_evaluate(config, workdir, data=data)
  return workdir


@pytest.mark.parametrize('dataset', ['mnist', 'fashion_mnist'])
def test_explore(data, tmp_path, dataset):
  config = tiny.get_config()
  config.dataset = dataset
  stats = explore.explore(config, str(tmp_path), data=data)
  saved = json.load(open(tmp_path / 'explore' / 'stats.json'))
  assert saved == json.loads(json.dumps(stats))
  train_stats = saved['splits']['train']
  assert train_stats['size'] == 640 and saved['splits']['test']['size'] == 203
  assert sum(train_stats['class_counts'].values()) == 640
  assert list(train_stats['class_counts'])[0] == ('T-shirt/top' if dataset == 'fashion_mnist' else '0')
  assert train_stats['image_shape'] == [28, 28, 1] and train_stats['dtype'] == 'uint8'
  counts = np.bincount(data['train'].labels, minlength=10)
  assert list(train_stats['class_counts'].values()) == counts.tolist()
  pixels = data['train'].images / 255
  assert train_stats['pixel_mean'] == pytest.approx(pixels.mean(), abs=1e-4)
  assert train_stats['pixel_std'] == pytest.approx(pixels.std(), abs=1e-4)
  assert train_stats['empty_pixel_fraction'] == pytest.approx((data['train'].images == 0).mean(), abs=1e-4)
  for name in ('samples.png', 'class_histogram.png', 'class_means.png'):
    assert_png(tmp_path / 'explore' / name)


def test_explore_on_a_trained_workdir_reads_its_data(digit_model, tmp_path):
  """`--mode=explore --workdir=W` with no other flag uses the data folders the run
  saved, as eval and predict do (offline, the default ones hold nothing)."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  shutil.copy(os.path.join(digit_model, 'config.json'), workdir)
  env = dict(os.environ, HOME=str(tmp_path), TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), '--mode=explore',
                           f'--workdir={workdir}'], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  stats = json.loads((workdir / 'explore' / 'stats.json').read_text())
  assert stats['splits']['train']['size'] == 60_000
  assert not (tmp_path / 'tfds').exists()


def test_eval_report(trained, data):
  report = evaluate.evaluate([trained], data=data)
  saved = json.load(open(os.path.join(trained, 'eval', 'report.json')))
  assert saved['num_test_images'] == 203
  matrix = np.array(saved['confusion_matrix'])
  assert matrix.sum() == 203 and np.trace(matrix) == 203 - saved['num_errors']
  assert saved['test_accuracy'] == pytest.approx(np.trace(matrix) / 203)
  last = json.loads(open(os.path.join(trained, 'metrics.jsonl')).readlines()[-1])
  assert saved['test_accuracy'] == pytest.approx(last['test_accuracy'], abs=1e-6)
  assert set(saved['per_class']['3']) == {'precision', 'recall', 'f1', 'support'}
  assert 0 <= saved['expected_calibration_error'] <= 1
  assert report['models'][0]['step'] == 20
  for name in ('confusion_matrix.png', 'mistakes.png', 'reliability.png', 'training_curves.png'):
    assert_png(os.path.join(trained, 'eval', name))


def test_eval_report_of_a_model_that_makes_mistakes(digit_model, mnist, tmp_path, caplog):
  """On the real test set (the synthetic one has none): the mistakes counted, shown
  and logged as they are."""
  caplog.set_level('INFO')
  workdir = str(tmp_path / 'run')
  shutil.copytree(digit_model, workdir)
  report = evaluate.evaluate([workdir], data=mnist)
  matrix = np.array(report['confusion_matrix'])
  assert 0 < report['num_errors'] == 10_000 - np.trace(matrix)
  assert report['models'][0]['test_accuracy'] == report['test_accuracy']
  logged = (f'Step 400: test accuracy {100 * report["test_accuracy"]:.2f}% '
            f'({report["num_errors"]} errors in 10000 images)')
  assert logged in caplog.text and 'Members:' not in caplog.text
  hardest = sorted(report['per_class'].items(), key=lambda kv: kv[1]['f1'])[:3]
  assert 'Hardest classes (F1): ' + ', '.join(
      f'{name} {100 * scores["f1"]:.2f}%' for name, scores in hardest) + '\n' in caplog.text
  assert_png(os.path.join(workdir, 'eval', 'mistakes.png'))


def test_confident_mistakes_are_wrong_and_most_confident_first():
  probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
  labels = np.array([0, 0, 1, 1, 0])  # Wrong: 1 (80% sure), 2 (60%), 4 (55%).
  worst, mistakes = evaluate.confident_mistakes(probabilities, labels, count=2)
  assert mistakes == 3 and worst.tolist() == [1, 2]


def test_eval_reports_validation_only_where_every_member_held_out_the_same(trained, data,
                                                                          tmp_path, caplog):
  caplog.set_level('INFO')
  config = tiny.get_config()
  config.train_steps_per_epoch, config.validation_size = 10, 100
  held_out = str(tmp_path / 'held_out')
  last = train.train_and_evaluate(config, held_out, data=data)
  report = evaluate.evaluate([held_out], data=data)
  assert report['num_val_images'] == 100
  assert report['val_accuracy'] == pytest.approx(last['val_accuracy'], abs=1e-6)
  assert 'different validation sizes' not in caplog.text
  assert ('Validation (the last 100 training images, held out of training): accuracy '
          f'{100 * report["val_accuracy"]:.2f}%') in caplog.text
  report = evaluate.evaluate([held_out, trained], data=data)  # trained held none out.
  assert 'val_accuracy' not in report
  assert 'The models held out different validation sizes (0, 100)' in caplog.text


def test_eval_of_an_earlier_checkpoint(trained, data):
  report = evaluate.evaluate([trained], step=10, data=data)
  assert report['models'][0]['step'] == 10
  with pytest.raises(UserError, match='No checkpoint for step 7'):
    evaluate.evaluate([trained], step=7, data=data)


def test_eval_without_checkpoint(tmp_path, data):
  (tmp_path / 'config.json').write_text(json.dumps(tiny.get_config().to_dict()))
  with pytest.raises(UserError, match='No checkpoint'):
    evaluate.evaluate([str(tmp_path)], data=data)
  with pytest.raises(UserError, match='config.json does not exist'):
    evaluate.evaluate([str(tmp_path / 'nothing')], data=data)


def test_metric_functions():
  labels = np.array([0, 0, 1, 1, 2])
  predictions = np.array([0, 1, 1, 1, 0])
  matrix = evaluate.confusion_matrix(labels, predictions, 3)
  np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
  scores = evaluate.per_class_scores(matrix, ['a', 'b', 'c'])
  assert scores['a'] == {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'support': 2}
  assert scores['b']['precision'] == pytest.approx(2 / 3) and scores['b']['recall'] == 1
  assert scores['b']['f1'] == pytest.approx(0.8)
  assert scores['c'] == {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'support': 1}
  # A class never in the labels nor predicted: zeros, not 0/0.
  absent = evaluate.per_class_scores(evaluate.confusion_matrix(labels, predictions, 4),
                                     list('abcd'))['d']
  assert absent == {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'support': 0}
  # Always 90% sure and right 90% of the time: perfectly calibrated.
  probs = np.tile([0.9, 0.1], (10, 1))
  ece, _ = evaluate.calibration(probs, np.array([0] * 9 + [1]))
  assert ece == pytest.approx(0.0, abs=1e-12)
  ece, _ = evaluate.calibration(probs, np.array([1] * 10))  # Always wrong.
  assert ece == pytest.approx(0.9)
  # Certainty (1.0) is in the last of the CALIBRATION_BINS bins, not one of its own.
  ece, bins = evaluate.calibration(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 0]))
  assert ece == pytest.approx(0.25) and bins['count'] == [0] * 7 + [1] + [0] * 6 + [1]
  ece, _ = evaluate.calibration(np.array([[0.1, 0.9]]), np.array([0]))  # 90% sure, wrong.
  assert ece == pytest.approx(0.9)
  # A true class given probability 0 (float32 underflows) costs -log(1e-12), not infinity.
  accuracy, loss = evaluate.accuracy_and_loss(np.array([[1.0, 0.0], [0.25, 0.75]]),
                                              np.array([1, 1]))
  assert accuracy == 0.5 and loss == pytest.approx((-np.log(1e-12) - np.log(0.75)) / 2)


def _digit_files(folder):
  folder.mkdir()
  ring = Image.new('RGB', (90, 120), 'white')
  ImageDraw.Draw(ring).ellipse((20, 10, 70, 110), outline='black', width=7)
  ring.save(folder / 'ring.jpg')
  ring.convert('P').save(folder / 'ring.gif')
  (folder / 'broken.png').write_text('nope')
  Image.new('L', (50, 50), 128).save(folder / 'blank.png')
  (folder / 'empty.bmp').write_bytes(b'')
  return folder


def test_predict_files(trained, tmp_path):
  folder = _digit_files(tmp_path / 'in')
  out_dir = tmp_path / 'seen'
  with open(tmp_path / 'out.jsonl', 'w') as out:
    failed = predict.predict_files([str(folder)], trained, save_preprocessed=str(out_dir), out=out)
  records = {os.path.basename(r['file']): r
             for r in map(json.loads, open(tmp_path / 'out.jsonl'))}
  assert failed == 3
  assert set(records) == {'ring.jpg', 'ring.gif', 'broken.png', 'blank.png', 'empty.bmp'}
  assert 'not a readable image' in records['broken.png']['error']
  assert 'blank' in records['blank.png']['error']
  assert 'empty' in records['empty.bmp']['error']
  for name in ('ring.jpg', 'ring.gif'):
    r = records[name]
    assert len(r['probabilities']) == 10 and sum(r['probabilities']) == pytest.approx(1, abs=1e-3)
    assert r['prediction'] == int(np.argmax(r['probabilities']))
    assert r['confidence'] == max(r['probabilities'])
  seen = sorted(os.listdir(out_dir))
  assert len(seen) == 2 and all(s.endswith('.png') for s in seen)
  files = predict.image_paths([str(folder)])  # Saved as <index>_<stem>.png.
  for name in seen:  # What the model saw: the file's preprocessed image, pixel for pixel.
    np.testing.assert_array_equal(np.asarray(Image.open(out_dir / name)),
                                  predict.preprocess(files[int(name[:4])]))


def test_predict_files_reads_a_number_digit_by_digit(trained, tmp_path):
  """Three rings side by side: one line with `number` and each digit's answer and box;
  --save_preprocessed keeps each digit the model saw."""
  (tmp_path / 'in').mkdir()
  rings = Image.new('L', (400, 150), 255)
  for left in (30, 160, 290):
    ImageDraw.Draw(rings).ellipse((left, 20, left + 80, 130), outline=0, width=9)
  rings.save(tmp_path / 'in' / 'rings.png')
  out = io.StringIO()
  assert predict.predict_files([str(tmp_path / 'in')], trained, out=out,
                               save_preprocessed=str(tmp_path / 'seen')) == 0
  record = json.loads(out.getvalue())
  assert len(record['number']) == 3 and 'prediction' not in record
  lefts = [d['box'][0] for d in record['digits']]
  assert [round(x, -1) for x in lefts] == [30, 160, 290], lefts
  assert record['number'] == ''.join(str(d['prediction']) for d in record['digits'])
  assert sorted(os.listdir(tmp_path / 'seen')) == [f'0000_rings_{i}.png' for i in (1, 2, 3)]


def test_predict_files_classifies_in_batches_of_one_shape(trained, tmp_path, monkeypatch):
  folder = _digit_files(tmp_path / 'in')
  for i, size in enumerate((40, 300, 1000)):  # More digits, of other sizes.
    Image.open(folder / 'ring.jpg').resize((size, size)).save(folder / f'more{i}.png')
  predictor = predict.Predictor.from_workdir(trained, batch=2)
  shapes, apply = [], predictor.apply
  predictor.apply = lambda x: shapes.append(x.shape) or apply(x)
  monkeypatch.setattr(predict, 'BATCH', 2)
  files = predict.image_paths([str(folder)])
  out = io.StringIO()
  assert predictor.predict_files(files, out=out) == 3
  records = [json.loads(line) for line in out.getvalue().splitlines()]
  assert [r['file'] for r in records] == files  # In order, errors in their places.
  assert shapes and set(shapes) == {(2, 28, 28, 1)}  # Padded: one compiled shape.
  assert len(shapes) <= 4  # 8 files in batches of 2: the model runs per batch, not per image.
  for record in records:
    if 'error' not in record:
      alone = predictor([record['file']])[0]
      np.testing.assert_allclose(record['probabilities'], alone, atol=1e-4)


def test_predict_function_matches_files(trained, tmp_path):
  folder = _digit_files(tmp_path / 'in')
  probabilities = predict.predict([str(folder / 'ring.jpg'), Image.open(folder / 'ring.gif')],
                                  trained)
  assert probabilities.shape == (2, 10)
  np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
  out = io.StringIO()  # The model's own answers, as --mode=predict prints them.
  predict.predict_files([str(folder / 'ring.jpg'), str(folder / 'ring.gif')], trained, out=out)
  printed = [json.loads(line)['probabilities'] for line in out.getvalue().splitlines()]
  np.testing.assert_allclose(probabilities, printed, atol=1e-4)
  assert probabilities.max() > 0.2  # Not a uniform guess.


def test_predict_cli_exit_code_and_json(trained, tmp_path):
  folder = _digit_files(tmp_path / 'in')
  command = [sys.executable, os.path.join(ROOT, 'main.py'), '--mode=predict',
             f'--workdir={trained}', f'--images={folder / "ring.jpg"}']
  ok = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert set(json.loads(ok.stdout)) == {'file', 'prediction', 'confidence', 'probabilities',
                                        'number', 'digits'}
  bad = subprocess.run(command[:-1] + [f'--images={folder}'], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
  assert bad.returncode != 0 and 'could not be read' in bad.stderr
  assert len(bad.stdout.strip().splitlines()) == 5


def test_ensemble_averages_probabilities(trained, data, tmp_path, caplog):
  caplog.set_level('INFO')
  config = tiny.get_config()
  config.train_steps_per_epoch = 10
  config.seed = 1
  second = str(tmp_path / 'second')
  train.train_and_evaluate(config, second, data=data)
  members = [evaluate.test_probabilities(w, config_lib.load_saved(w), data['test'])[0]
             for w in (trained, second)]
  report = evaluate.evaluate([trained, second], data=data)
  average = (members[0] + members[1]) / 2
  expected = np.mean(np.argmax(average, axis=1) == data['test'].labels)
  assert report['test_accuracy'] == pytest.approx(expected)
  # The loss sees every probability: an ensemble of one member would not match it.
  assert report['test_loss'] == pytest.approx(
      evaluate.accuracy_and_loss(average, data['test'].labels)[1], rel=1e-4)
  assert report['test_loss'] != pytest.approx(
      evaluate.accuracy_and_loss(members[0], data['test'].labels)[1], rel=1e-4)
  assert [m['test_accuracy'] for m in report['models']] == pytest.approx(
      [np.mean(p.argmax(1) == data['test'].labels) for p in members])
  assert f'Ensemble of 2: test accuracy {100 * report["test_accuracy"]:.2f}%' in caplog.text
  assert 'Members: ' + ', '.join(f'{100 * m["test_accuracy"]:.2f}%'
                                 for m in report['models']) in caplog.text
  assert os.path.isfile(os.path.join(trained, 'eval_ensemble', 'report.json'))
  # Its training curves are the first member's, in whose folder the report is written.
  drawn = grey_pixels(os.path.join(trained, 'eval_ensemble', 'training_curves.png'))
  for workdir, same in ((trained, True), (second, False)):
    plots.training_curves(workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl')),
                          str(tmp_path / 'curves.png'))
    assert np.array_equal(grey_pixels(tmp_path / 'curves.png'), drawn) == same, workdir
  config.dataset = 'fashion_mnist'
  train.train_and_evaluate(config, str(tmp_path / 'fashion'), data=data)
  with pytest.raises(UserError, match=re.escape(f'fashion was trained on fashion_mnist, {trained} '
                                                'on mnist: an ensemble needs one dataset')):
    evaluate.evaluate([trained, str(tmp_path / 'fashion')], data=data)


def test_shift_moves_pixels_and_fills_zeros():
  images = np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3, 1)
  np.testing.assert_array_equal(evaluate.shift(images, 1, -1)[0, ..., 0],
                                [[0, 0, 0], [2, 3, 0], [5, 6, 0]])
  np.testing.assert_array_equal(evaluate.shift(images, 0, 0), images)


def test_test_time_augmentation_averages_the_shifted_views(trained, data):
  config = config_lib.load_saved(trained)
  test = data['test']
  views = [evaluate.test_probabilities(
      trained, config, input_pipeline.Split(evaluate.shift(test.images, dy, dx), test.labels))[0]
           for dy, dx in evaluate.TTA_SHIFTS]
  assert sorted(evaluate.TTA_SHIFTS) == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  assert not np.allclose(views[0], views[4])  # Shifted views differ from the image.
  averaged, _ = evaluate.test_probabilities(trained, config, test, tta=True)
  np.testing.assert_allclose(averaged, np.mean(views, axis=0), atol=1e-6)
  report = evaluate.evaluate([trained], data=data, tta=True)
  assert report['test_accuracy'] == pytest.approx(np.mean(averaged.argmax(1) == test.labels))
  assert len(report['test_time_augmentation']) == 9
  assert os.path.isfile(os.path.join(trained, 'eval_tta', 'report.json'))
