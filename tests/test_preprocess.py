"""MNIST-style preprocessing of real-world images: numeric checks on synthetic shapes."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_jax import predict


def drawing(size=(300, 200), box=(120, 40, 150, 100), width=None, ink=20, paper=235,
            mode='L', ellipse=False):
  """A dark shape on light paper: a filled rectangle, or a ring if `ellipse`."""
  image = Image.new(mode, size[::-1] if False else size, paper if mode == 'L' else (paper,) * 3)
  draw = ImageDraw.Draw(image)
  fill = ink if mode == 'L' else (ink,) * 3
  if ellipse:
    draw.ellipse(box, outline=fill, width=width or 6)
  else:
    draw.rectangle(box, fill=fill)
  return image


def ink_box(frame):
  ys, xs = np.nonzero(frame > 30)
  return ys.min(), ys.max(), xs.min(), xs.max()


def center_of_mass(frame):
  f = frame.astype(float)
  return ((np.arange(28) * f.sum(1)).sum() / f.sum(), (np.arange(28) * f.sum(0)).sum() / f.sum())


def test_scales_longer_side_to_20_keeping_aspect_and_centres_mass():
  # A 60-high, 30-wide bar, off centre in a 200x300 picture.
  frame = predict.preprocess(drawing(size=(300, 200), box=(200, 20, 229, 79)))
  assert frame.shape == (28, 28) and frame.dtype == np.uint8
  top, bottom, left, right = ink_box(frame)
  assert bottom - top + 1 == pytest.approx(20, abs=1)
  assert right - left + 1 == pytest.approx(10, abs=1)
  cy, cx = center_of_mass(frame)
  assert cy == pytest.approx(13.5, abs=0.6) and cx == pytest.approx(13.5, abs=0.6)
  assert frame.max() == 255 and frame[0].max() == 0  # Light ink, dark background.


def test_polarity_does_not_matter():
  dark_on_light = predict.preprocess(drawing(ellipse=True, box=(50, 30, 130, 170)))
  light_on_dark = predict.preprocess(drawing(ellipse=True, box=(50, 30, 130, 170), ink=240, paper=15))
  assert np.abs(dark_on_light.astype(int) - light_on_dark).mean() < 3


def test_specks_shadows_and_colour_are_ignored():
  clean = predict.preprocess(drawing(ellipse=True, box=(50, 30, 130, 170), mode='RGB'))
  image = np.asarray(drawing(ellipse=True, box=(50, 30, 130, 170), mode='RGB'), float)
  shadow = np.linspace(0, 110, image.shape[1])[None, :, None]  # Darker to the right.
  image = image - shadow
  image[10:13, 260:263] = 20  # A speck far from the digit.
  image[280:282, 20:22] = 20
  image = image * np.array([0.8, 0.9, 1.0])  # Bluish paper and ink.
  rng = np.random.default_rng(0)
  image += rng.normal(0, 6, image.shape)  # Paper texture.
  messy = predict.preprocess(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)))
  assert ink_box(messy) == pytest.approx(ink_box(clean), abs=1)
  assert np.abs(messy.astype(int) - clean).mean() < 12


def test_thin_strokes_are_thickened_to_mnist_width():
  frame = predict.preprocess(drawing(size=(400, 400), box=(100, 50, 300, 350), ellipse=True, width=2))
  rows = frame[10:18]  # The ring's sides cross these rows twice.
  widths = [(r > 127).sum() / 2 for r in rows]
  assert np.mean(widths) >= 1.5, widths


def test_mnist_like_input_is_left_nearly_alone():
  image = np.zeros((28, 28), np.uint8)
  pil = Image.fromarray(image)
  ImageDraw.Draw(pil).ellipse((8, 4, 19, 23), outline=255, width=3)  # A '0', 20 px high.
  original = np.asarray(pil)
  frame = predict.preprocess(original)
  assert np.corrcoef(frame.ravel(), original.ravel())[0, 1] > 0.8


def test_transparent_drawing_is_read_from_its_alpha():
  rgba = Image.new('RGBA', (200, 200), (0, 0, 0, 0))
  ImageDraw.Draw(rgba).ellipse((60, 20, 140, 180), outline=(0, 0, 0, 255), width=10)
  on_paper = drawing(size=(200, 200), box=(60, 20, 140, 180), ellipse=True, width=10, ink=0,
                     paper=255)
  assert np.abs(predict.preprocess(rgba).astype(int) - predict.preprocess(on_paper)).mean() < 3


@pytest.mark.parametrize('image', [
    Image.new('L', (100, 100), 200),
    Image.fromarray(np.random.default_rng(0).normal(128, 4, (300, 300)).clip(0, 255).astype(np.uint8)),
])
def test_blank_images_are_refused(image):
  with pytest.raises(predict.ImageProblem, match='blank'):
    predict.preprocess(image)


def test_bad_files(tmp_path):
  (tmp_path / 'empty.png').write_bytes(b'')
  (tmp_path / 'text.png').write_text('not an image')
  Image.new('L', (8000, 7000), 255).save(tmp_path / 'huge.png')
  for name, message in [('empty.png', 'empty file'), ('text.png', 'not a readable image'),
                        ('huge.png', 'too large'), ('missing.png', 'no such file')]:
    with pytest.raises(predict.ImageProblem, match=message):
      predict.preprocess(tmp_path / name)


@pytest.mark.parametrize('fmt,mode', [('PNG', 'RGB'), ('PNG', 'RGBA'), ('PNG', 'P'), ('JPEG', 'RGB'),
                                      ('BMP', 'RGB'), ('GIF', 'P'), ('TIFF', 'L'), ('WEBP', 'RGB'),
                                      ('PNG', 'I;16')])
def test_formats_and_modes(tmp_path, fmt, mode):
  base = drawing(size=(120, 160), box=(30, 30, 90, 130), ellipse=True, width=8, mode='RGB')
  image = base.convert('L').convert(mode) if mode == 'I;16' else base.convert(mode)
  path = tmp_path / f'digit.{fmt.lower()}'
  image.save(path, fmt)
  frame = predict.preprocess(path)
  assert ink_box(frame)[1] - ink_box(frame)[0] + 1 == pytest.approx(20, abs=1)


def test_folders_are_searched_recursively(tmp_path):
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  for path in ('one.png', 'a/two.JPG', 'a/b/three.webp', 'a/notes.txt'):
    (tmp_path / path).write_bytes(b'x')
  found = predict.image_paths([str(tmp_path)])
  assert [p[len(str(tmp_path)) + 1:] for p in found] == ['one.png', 'a/two.JPG', 'a/b/three.webp']
