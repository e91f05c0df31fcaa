"""`--mode=predict`: digits from real photos, scans and drawings.

Before the model sees an image, it is made to look like MNIST, the way MNIST
itself was made (LeCun et al.): greyscale, light ink on a dark background, the
digit cropped, scaled so its longer side is 20 pixels (aspect ratio kept) and
placed in a 28x28 frame so that its centre of mass is at the centre. Specks
are ignored and thin pen strokes thickened to MNIST's stroke width. Photos
(paper around the digit) also lose uneven lighting, paper texture and the table
the paper lies on, where it shows at the edges or all around a small sheet;
small pictures and tight crops are taken as digits already cut out. Several
digits side by side (a house number, a year) are cut apart and read left to
right. Only pictures that hold no digit (one colour, a faint smudge, pixel
noise, blank paper however grainy or blotchy, a lone dot or dash) are refused.
"""

import dataclasses
import io
import itertools
import json
import os
import sys
from typing import Iterable, Sequence

from absl import logging
from flax import nnx
import jax
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from scipy import ndimage, spatial

from mnist_jax import config_lib, inference, input_pipeline
from mnist_jax.errors import UserError

# HEIC is an iPhone's photo format, which Pillow reads only through pillow-heif's opener
# (libheif: the photo turned upright, as its viewer shows it), installed with
# requirements.txt. Without it, _load names what to install.
try:
  import pillow_heif  # pylint: disable=g-import-not-at-top
  pillow_heif.register_heif_opener()
except ImportError:
  pass
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp',
                    '.heic', '.heif', '.avif')
MAX_PIXELS = 50_000_000  # A 50-megapixel photo is plenty; beyond, refuse.
MAX_FILE_BYTES = 200 * 2**20
FULL_SIZE = 'mnist_jax_full_size'  # In a PIL image's info: its file's size, read smaller.
WORK_SIZE = 256  # Longest side while finding the digit.
DIGIT_BOX = 20  # MNIST: the digit's longer side, in pixels.
FRAME = 28
BATCH = 256  # Images per call of the model: one compiled shape.
MIN_CONTRAST_OVER_NOISE = 6
MIN_CONTRAST_OVER_BLOTCHES = 5
STROKE_WIDTH = 2.2  # Typical MNIST stroke width at DIGIT_BOX scale, in pixels.
# Smaller than this on either side: a digit already cut out (a tight crop, a
# small scan), not a photo with paper around it.
PHOTO_SIDE = 64
MIN_CONTRAST = 0.1  # Of the grey range [0, 1]: less is a blank page or one colour.
# Pixel noise's neighbour correlation has a spread of about 1/sqrt(pairs); a
# digit's is far above (see `structure`). 2.75 spreads: at 8x8 (0.26) it
# refuses none of scikit-learn's 1,797 digits, and 14 of the 10,000 MNIST test
# digits cut to their box and fitted into 8x8 (aliased past reading).
NOISE_SIGMAS = 2.75
# Cut-outs enlarged to 4x MNIST's size: the contrast gain around half ink, and
# the faintest ink (of the brightest) kept in the digit's box. Chosen on
# scikit-learn's even-numbered digits and 1,000 MNIST test digits outside the
# benchmark's (benchmarks/predict_robustness.py): scikit-learn 81% -> 90%,
# MNIST digits cut to 12x12 99.0% -> 99.3%.
SHARPEN = 3.0
FAINT_INK = 0.15
# Strong ink (all of it) whose longer side is under this fraction of a photo's
# shorter side is a dot or a dash, not a digit; so are pieces of ink each under half
# of it (specks, dust) however far apart. Cut-outs are exempt: a tight scan's digit
# fills it, however few its pixels (scikit-learn's are 8x8).
MIN_MARK = 0.12
# Strong ink whose every piece is under this fraction of a photo's shorter side is
# not even a dot a person made: dust, JPEG noise, a sliver of table. Blank.
SPECK = 0.02
# Ink at least this much wider than tall may be touching digits, and is also read
# as 2, 3... of them (read_digits). Chosen among 0.6-1.0 on numbers made of the
# first half of the MNIST test digits (benchmarks/read_numbers.py --dev): 0.8 and
# below read touching pairs 100% right, 1.0 98%. Favouring fewer digits (a factor
# of 0.5-0.7 per extra one, or 2-4 for one digit where all the ink is one piece)
# only lost: touching pairs 94% -> 87%.
TOUCHING_WIDTH = 0.8
# Where a photo's strong ink along its frame is a table, not digits (_without_edges):
# within EDGE_DEPTH of the edges, EDGE_GAP (of the shorter side) from the digits, and
# in a corner or along EDGE_RUN of a side and EDGE_LONGER times the digits' length.
EDGE_RUN = 0.25
EDGE_LONGER = 1.5
EDGE_DEPTH = 1 / 3
EDGE_GAP = 0.05
# A photo whose strong ink comes within this fraction of its shorter side of two
# opposite edges is a tight crop: no paper around the digit (_ink).
TIGHT = 0.03
# A sheet photographed on a table that shows all around it (a note on a desk, the
# table maybe most of the picture; a page with the table at every edge), found by
# _sheet: at least SHEET_AREA of the picture and the table SHEET_TABLE,
# SHEET_RECTANGLE of the smallest rectangle around it (a sheet seen at a slant
# fills 85-100% of it; an ellipse, a bold 0, 79%), its inscribed circle SHEET_THICK
# of its length across and its ink strokes SHEET_STROKE at most (not a bold digit,
# nor a 0's hole), and its edge a step (SHEET_STEP of the difference between sheet
# and table within 5 pixels of it; a shadow is a slope). Over half the picture, its
# table is SHEET_TABLE_GREY of the other grey, and the picture's grey two levels:
# Otsu's split explains SHEET_LEVELS of its variance (a uniform ramp, a shadow
# across paper, explains 75%; generated sheets on tables 67-98%, photos without a
# table 53-64% where a shadow's split passed the other checks).
SHEET_AREA = 0.1
SHEET_TABLE = 0.02
SHEET_RECTANGLE = 0.85
SHEET_THICK = 0.2
SHEET_STROKE = 0.15
SHEET_STEP = 0.5
SHEET_TABLE_GREY = 0.8
SHEET_LEVELS = 0.75
# Ruled and squared paper (_without_rulings): straight lines at most RULING_TILT
# degrees from level or plumb (the paper turned) whose ink (over the ink just beside
# them, by RULING_LEVEL of the strongest ink and by 3 sigmas of its noise) covers
# RULING_COVER of their length, at most RULING_WIDTH of the picture's longer side
# thick. On them, ink over RULING_KEEP times theirs (or their crossings') is a
# stroke written over a line.
RULING_TILT = 10
RULING_LEVEL = 0.1
RULING_COVER = 0.8
RULING_WIDTH = 0.03
RULING_KEEP = 1.25
# Where the lighting estimate's second try follows a shadow's slope (_ink): a photo's
# strokes stand at least this many sigmas (robust, of the paper's level about it) out.
# Chosen on generated photos (benchmarks/README.md): fine-pen digits in deep shadows
# 33 and more; blank pages 1.7 and more, most under 4 (grain, blotches), the rest
# dust, rulings or a sheet's edge, which the checks after refuse.
SLOPE_CONTRAST = 15


class ImageProblem(ValueError):
  """This one image cannot be used; the message says why."""


class _ShadowLeft(ImageProblem):
  """A photo's strong ink covers over half of it: paper whose shadow the lighting
  estimate left behind (ink is the minority), refused unless _ink's second estimate,
  which follows the shadow's slope, finds strokes standing out."""


def open_image(path: str) -> Image.Image:
  """Opens a file as a PIL image (the first frame of an animation)."""
  if not os.path.isfile(path):
    if os.path.islink(path):
      raise ImageProblem('a symbolic link that leads nowhere (broken, or a loop)')
    if os.path.exists(path):
      raise ImageProblem('not a regular file (a folder, FIFO, socket or device)')
    raise ImageProblem('no such file')
  size = os.path.getsize(path)
  if size == 0:
    raise ImageProblem('empty file')
  if size > MAX_FILE_BYTES:
    raise ImageProblem(f'file too large ({size / 2**20:.0f} MiB > {MAX_FILE_BYTES / 2**20:.0f})')
  return _load(path)


def open_bytes(data: bytes) -> Image.Image:
  """An image file's contents (an upload) as a PIL image, checked as open_image checks."""
  if not data:
    raise ImageProblem('empty file')
  return _load(io.BytesIO(data))


def _load(source) -> Image.Image:
  try:
    image = Image.open(source)
    if image.width * image.height > MAX_PIXELS:
      raise ImageProblem(f'image too large ({image.width}x{image.height} pixels; '
                         f'at most {MAX_PIXELS:,})')
    image.seek(0)
    # JPEG decodes at 1/2, 1/4 or 1/8 scale for free: the digit is found at
    # WORK_SIZE anyway (3000x4000 photos: 3.6 -> 13.6 a second end to end).
    # read_picture gives the boxes in the file's own pixels all the same.
    full = image.size
    image.draft(image.mode, (2 * WORK_SIZE, 2 * WORK_SIZE))
    image.load()
    if image.size != full:
      image.info[FULL_SIZE] = full
  except Image.DecompressionBombError as e:  # A small file that claims a huge picture.
    raise ImageProblem(f'image too large: {e}') from e
  except UnidentifiedImageError as e:  # Its message names a Python object, not the file.
    if _is_heif(source):
      raise ImageProblem('a HEIC picture, which needs pillow-heif: pip install pillow-heif') from e
    raise ImageProblem('not a readable image: not a PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC '
                       'or AVIF picture') from e
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise ImageProblem(f'not a readable image ({type(e).__name__}: {str(e).strip()})') from e
  return image


def _is_heif(source) -> bool:
  """Whether a file (path or stream) starts as HEIC/HEIF does: an ISO 'ftyp' box of
  an HEVC image brand."""
  if isinstance(source, io.BytesIO):
    head = source.getvalue()[:12]
  else:
    with open(source, 'rb') as f:
      head = f.read(12)
  return head[4:8] == b'ftyp' and head[8:12] in (b'heic', b'heix', b'hevc', b'hevx', b'mif1',
                                                   b'msf1', b'heim', b'heis')


def to_grey(image: Image.Image) -> np.ndarray:
  """Greyscale float array in [0, 1], transparency resolved.

  A drawing exported with a transparent background has its ink in the alpha
  channel; it is laid on a background that contrasts with the ink's colour.
  """
  image = ImageOps.exif_transpose(image)  # Phone photos are often stored rotated.
  if image.mode in ('P', 'PA') or (image.mode in ('L', 'LA', 'RGB') and 'transparency' in image.info):
    image = image.convert('RGBA')
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    array = np.asarray(image, np.float64)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)
  if image.mode in ('RGBA', 'LA'):
    alpha = np.asarray(image.getchannel('A'), np.float64) / 255
    grey = np.asarray(image.convert('L'), np.float64) / 255
    if alpha.min() < 0.5:  # Real transparency, not an opaque alpha channel.
      ink = grey[alpha > 0.5]
      background = 1.0 if ink.size == 0 or ink.mean() < 0.5 else 0.0
      return alpha * grey + (1 - alpha) * background
    return grey
  return np.asarray(image.convert('L'), np.float64) / 255


def _shrink(grey: np.ndarray, longest: int) -> np.ndarray:
  h, w = grey.shape
  if max(h, w) <= longest:
    return grey
  scale = longest / max(h, w)
  return _resize(grey, (max(1, round(h * scale)), max(1, round(w * scale))))


def _resize(array: np.ndarray, shape) -> np.ndarray:
  """Resampled to (h, w): area-averaged down (anti-aliased, as MNIST's digits were),
  bilinear up. PIL's resampling, since scipy.ndimage.zoom does not average areas."""
  down = shape[0] < array.shape[0] or shape[1] < array.shape[1]
  image = Image.fromarray(array.astype(np.float32), 'F')
  return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BOX if down
                                 else Image.Resampling.BILINEAR), np.float64)


def _border(grey: np.ndarray) -> np.ndarray:
  return np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])


def _cut_out_ink(grey: np.ndarray) -> np.ndarray:
  """A cut-out digit's (a tight crop, a small scan) ink as light on dark, >= 0.

  No room for shadows, and the ink may cover half the picture. The background is
  what the border mostly shows, even where the digit touches the frame.
  """
  background = np.median(_border(grey))
  if grey.mean() < background:  # Dark ink on light paper.
    grey, background = 1 - grey, 1 - background
  return np.clip(grey - background, 0, None)


def _photo_paper(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A photo as light ink on dark, and its paper's level per tile of an 8x8 grid (a
  low percentile, since ink is bright and rare); _paper_level reads it per pixel."""
  # The ink is the minority, and a minority's side is the skew's: a pen's thin
  # strokes, too few pixels to move the extreme percentiles, still tip it.
  # About the lighting's plane, so that a shadow's slope does not.
  if np.mean(_off_plane(grey) ** 3) < 0:  # Dark ink on light paper.
    grey = 1 - grey
  h, w = grey.shape
  n = 8
  tiles = [[np.percentile(grey[h * i // n:h * (i + 1) // n, w * j // n:w * (j + 1) // n], 10)
            for j in range(n)] for i in range(n)]
  return grey, np.array(tiles)


def _paper_level(tiles: np.ndarray, shape: tuple[int, int], slope: bool = False) -> np.ndarray:
  """The paper's level under each pixel, from _photo_paper's tiles (shadows, uneven
  light): the darkest of each tile's neighbours, so that a tile full of ink cannot
  lift it, interpolated smoothly; with `slope`, following a shadow's slope."""
  (h, w), n = shape, len(tiles)
  if not slope:
    tiles = ndimage.minimum_filter(tiles, size=3, mode='nearest')
    return np.asarray(Image.fromarray(tiles.astype(np.float32), 'F').resize(
        (w, h), Image.Resampling.BILINEAR))
  # On a shadow's slope the darkest neighbour lies a tile's step under the paper.
  # The lightest of those darkest ones (a grey opening) gives a straight slope back
  # and still drops a tile full of ink; the grid is carried on straight past the
  # picture's edges (odd reflection), so that the outer tiles keep the slope, and
  # read between the tiles' centres out to the edges.
  tiles = ndimage.grey_opening(np.pad(tiles, 2, mode='reflect', reflect_type='odd'), size=3)
  rows, columns = ((np.arange(size) + 0.5) * n / size + 1.5 for size in (h, w))
  return ndimage.map_coordinates(tiles, np.meshgrid(rows, columns, indexing='ij'), order=1)


def _otsu(values: np.ndarray) -> float:
  """Otsu's threshold over 64 bins (scikit-image has it, but is not worth a dependency)."""
  hist, edges = np.histogram(values, bins=64)
  centers = (edges[:-1] + edges[1:]) / 2
  weight = np.cumsum(hist)
  total = weight[-1]
  mean = np.cumsum(hist * centers)
  between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1)
  return float(centers[np.argmax(between)])


def _off_plane(grey: np.ndarray) -> np.ndarray:
  """The picture less its best-fitting plane (a shadow's slope, uneven lighting)."""
  h, w = grey.shape
  ys, xs = np.mgrid[0:h, 0:w]
  basis = np.stack([np.ones(h * w), ys.ravel(), xs.ravel()], 1)
  fit = np.linalg.lstsq(basis, grey.ravel(), rcond=None)[0]
  return grey - (basis @ fit).reshape(h, w)


def structure(grey: np.ndarray) -> float:
  """How much neighbouring pixels agree, beyond a plane (lighting): in [-1, 1].

  The correlation of each pixel with its right and lower neighbours after the
  best-fitting plane is removed. Strokes make it high even at 8x8 (scikit-learn's
  1,797 digits: 0.279 and more; MNIST test digits cut to their box and fitted
  into 12x12: 0.43 and more); pixel noise leaves it near 0, within about
  1 / sqrt(number of neighbour pairs).
  """
  residual = _off_plane(grey)
  pairs = [(residual[:, :-1], residual[:, 1:]), (residual[:-1], residual[1:])]
  a = np.concatenate([p[0].ravel() for p in pairs])
  b = np.concatenate([p[1].ravel() for p in pairs])
  a, b = a - a.mean(), b - b.mean()
  norm = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / norm) if norm > 1e-12 else 0.0


def check_not_blank(grey: np.ndarray) -> None:
  """Refuses a single colour, faint smudges and pixel noise, at any size."""
  if np.ptp(grey) < MIN_CONTRAST:
    raise ImageProblem('blank image: no ink found')
  h, w = grey.shape
  pairs = h * (w - 1) + (h - 1) * w
  if structure(grey) < NOISE_SIGMAS / np.sqrt(pairs):
    raise ImageProblem('blank image: only noise, no strokes found')


def _pieces(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
  """Strong ink: (ink scaled to a maximum of 1, its connected pieces' labels,
  their count, the threshold); refuses an image with no ink."""
  if ink.max() < 0.04:
    raise ImageProblem('blank image: no ink found')
  ink = ink / ink.max()
  candidates = ink[ink > 0.02]
  threshold = max(_otsu(candidates) if candidates.size > 10 else 0.5, 0.2)
  labels, count = ndimage.label(ink > threshold, structure=np.ones((3, 3)))
  return ink, labels, count, threshold


def _lengths(boxes: list) -> np.ndarray:
  """The longer side of each box (ndimage.find_objects' (rows, columns) slices)."""
  return np.array([max(rows.stop - rows.start, columns.stop - columns.start)
                   for rows, columns in boxes])


def _without_edges(ink: np.ndarray) -> np.ndarray:
  """A photo's ink less what lies along the picture's edge: a dark table, or the
  dark side of the paper's edge, in the frame.

  Pieces of ink inside the picture (touching no edge, no specks) are the digits.
  Pieces that touch the frame, stay within EDGE_DEPTH of the edges and EDGE_GAP
  away from the digits are the table, if one of them holds a corner of the
  picture (where the table shows around a sheet, it does) or runs along a side for
  EDGE_RUN of it and EDGE_LONGER times the digits' length there. A tight crop has
  no ink inside (its digits all touch the frame), and its digit reaches the
  middle or misses the corners; a digit that the frame cuts beside others is
  close to them, or as long as they are.
  """
  h, w = ink.shape
  middle = (slice(int(np.ceil(EDGE_DEPTH * h)), h - int(np.ceil(EDGE_DEPTH * h))),
            slice(int(np.ceil(EDGE_DEPTH * w)), w - int(np.ceil(EDGE_DEPTH * w))))
  table = False
  for _ in range(3):  # Again for the rim left once the strongest ink is gone.
    if ink.max() < 0.04:
      return ink
    _, labels, count, _ = _pieces(ink)
    index = np.arange(1, count + 1)
    runs = np.stack([np.bincount(side, minlength=count + 1)[1:]
                     for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1])])
    if not runs.any():  # Nothing touches the frame: most photos.
      return ink
    extent = _lengths(ndimage.find_objects(labels))
    inside = (runs.sum(0) == 0) & (extent >= MIN_MARK / 2 * min(h, w))  # Not specks.
    big = np.concatenate([[False], inside & (extent >= 0.2 * min(h, w))])[labels]
    if big.any() and (ndimage.maximum(ndimage.distance_transform_edt(big), labels, index)
                      >= 0.3 * extent).any():
      # A round blob, not strokes: the hole of a bold 0 cropped tight, whose ink
      # was taken for paper. (Of 10,119 pieces of MNIST test digits at least 0.3
      # of a digit long, one is 0.3 of its length thick; 999 in 1,000 under 0.25.)
      return ink
    inside = np.concatenate([[False], inside])[labels]
    if inside.any():
      rows, columns = np.nonzero(inside)
      length = np.array([np.ptp(columns) + 1] * 2 + [np.ptp(rows) + 1] * 2)  # Along each side.
      gap = ndimage.minimum(ndimage.distance_transform_edt(~inside), labels, index)
    else:  # Blank paper on a table, or a tight crop: only a corner says it is a table.
      length, gap = np.full(4, np.inf), np.full(count, np.inf)
    candidates = ((runs.sum(0) > 0) & ~np.isin(index, labels[middle])
                  & (gap >= EDGE_GAP * min(h, w)))
    if not inside.any() and not table and (
        ~candidates & (extent >= MIN_MARK / 2 * min(h, w))).any():
      return ink  # Without digits inside, a table leaves no more than specks.
    long = (runs >= EDGE_RUN * np.array([w, w, h, h])[:, None]) & (
        runs >= EDGE_LONGER * length[:, None])
    corner = np.isin(index, labels[[0, 0, -1, -1], [0, -1, 0, -1]])
    if not table:
      if not (candidates & (long.any(0) | corner)).any():
        return ink
      # Paper refused as blank with its edges stays so: the statistics of paper
      # whose edges are cut out can pass blotches for strokes.
      _strokes(ink, photo=True)
      table = True
    if not candidates.any():
      return ink
    edge = np.concatenate([[False], candidates])[labels]
    ink = np.where(ndimage.binary_dilation(edge, iterations=3), 0, ink)
  return ink


def _without_rulings(ink: np.ndarray) -> np.ndarray:
  """A photo's ink less the lines of ruled or squared paper (see RULING_TILT): where
  two or more run one way, those and any that cross them (a margin) are painted over.

  Two, since a digit cut tight may have one stroke from edge to edge (a 1), or one
  each way (a 4), but not two side by side. A ruling's pixels, and its blurred
  fringe 2 pixels either side, take the lesser of the ink just beyond it on either
  side (within a ruling's width along it), so that a stroke crossing it stays whole;
  so does a stroke darker than the ruling (where rulings cross, than their crossings)
  that reaches off the rulings.
  """
  widest = 2 + RULING_WIDTH * max(ink.shape)  # A ruling's, 2 of it the smoothing (_ink).
  lying, upright = _standing_out(ink, widest), _standing_out(ink.T, widest).T
  (level, long_level, level_width), (plumb, long_plumb, plumb_width) = (
      _rulings(lying, upright, widest), _rulings(upright.T, lying.T, widest))
  if max(long_level, long_plumb) < 2:
    return ink
  plumb = plumb.T
  bands = (ndimage.binary_dilation(level, np.ones((5, 1), bool)),
           ndimage.binary_dilation(plumb, np.ones((1, 5), bool)))
  crossings = bands[0] & bands[1]
  original = ink
  # Where rulings cross, they are darker: a pen's stroke through a crossing, darker still.
  at = level & plumb if (level & plumb).any() else crossings  # (1-pixel lines may not meet.)
  crossed = RULING_KEEP * np.percentile(original[at], 90) if at.any() else 0
  for ruling, band, across, width, turn in ((level, *bands, level_width, False),
                                            (plumb, *bands[::-1], plumb_width, True)):
    if not width:
      continue
    # Not ink written over the ruling, darker than the ruling's own.
    band = band & np.where(crossings, original <= crossed,
                           original <= RULING_KEEP * np.percentile(original[ruling], 90))
    beyond = np.where(across, 0, ink)  # Rulings that cross are no strokes.
    ink, band, beyond = (ink.T, band.T, beyond.T) if turn else (ink, band, beyond)
    d = width + 3
    side = ndimage.grey_dilation(np.pad(beyond, ((d, d), (0, 0)), mode='edge'), size=(1, d))
    ink = np.where(band, np.minimum(ink, np.minimum(side[:-2 * d], side[2 * d:])), ink)
    ink = ink.T if turn else ink
  # Ink left on the rulings that reaches nowhere off them is theirs too (a line's
  # end, lit brighter than the rest by a shadow's slope): a stroke goes on beyond.
  strong = ink > 0.5 * np.percentile(original[level | plumb], 90)
  off = ndimage.binary_propagation(strong & ~(bands[0] | bands[1]), np.ones((3, 3)), mask=strong)
  return np.where(strong & ~off, np.median(ink), ink)  # The paper's level: ink is the minority.


def _standing_out(ink: np.ndarray, widest: float) -> np.ndarray:
  """Where `ink` stands out from the least ink within a ruling's width (`widest`)
  above or below it (a top-hat), by RULING_LEVEL of the strongest and by 3 sigmas
  of its noise: near-level lines stand out; plumb lines and shadows, which dense
  squares made as strong as a ruling, are not taken for the paper's level and spread."""
  ink = ink - ndimage.grey_opening(ink, size=(int(widest) + 1, 1))
  paper = np.median(ink)  # Ink is the minority; rulings are too.
  spread = np.median(np.abs(ink - paper)) / 0.6745
  return ink > paper + max(RULING_LEVEL * (ink.max() - paper), 3 * spread)


def _rulings(strong: np.ndarray, crossing: np.ndarray, widest: float
             ) -> tuple[np.ndarray, int, int]:
  """The near-level rulings where ink stands out (`strong`, _standing_out): (their
  pixels, how many are long, the thickest's width), none over `widest`.

  Each straight line through the picture at each tilt is scored by how much of its
  length is ink (a Hough transform restricted to lines near level), leaving out
  where plumb lines cross it (`crossing`: the same for left and right), since there
  nothing stands out from above and below. A ruling is a cluster of (tilt, line)
  covered nearly end to end, thin at every tilt, and over half the picture's width
  long; or shorter (cut off by a corner of the picture) at a tilt of a long one.
  """
  h, w = strong.shape
  uncrossed = strong | ~crossing
  # Scored on every 4th column (a line's cover is a fraction; 4 times faster).
  strong, uncrossed = (a[:, ::4].ravel().astype(float)  # As bincount weighs.
                       for a in (strong, uncrossed))
  rows = np.arange(h)[:, None]
  reach = int(np.ceil(np.tan(np.radians(RULING_TILT)) * w / 2))
  shifts = [np.round(np.tan(np.radians(tilt)) * (np.arange(w) - w // 2)).astype(int) - reach
            for tilt in np.arange(-RULING_TILT, RULING_TILT + 0.25, 0.5)]
  lengths, covered = [], []
  for shift in shifts:
    line = (rows - shift[::4]).ravel()  # Each pixel's line at this tilt.
    length = np.bincount(line, minlength=h + 2 * reach)
    lengths.append(length)
    covered.append((np.bincount(line, strong, minlength=h + 2 * reach)
                    >= RULING_COVER * np.bincount(line, uncrossed, minlength=h + 2 * reach))
                   & (length >= 0.1 * w / 4))
  labels, count = ndimage.label(np.array(covered), structure=np.ones((3, 3)))
  index = np.arange(count + 1)
  thickness = np.max([np.bincount(at_tilt, minlength=count + 1) for at_tilt in labels], 0)
  thin = thickness <= widest
  long = thin & (ndimage.maximum(np.array(lengths) >= w / 8, labels, index) > 0)
  long[0] = False
  tilts = np.isin(labels, index[long]).any(1, keepdims=True)  # The long ones' tilts.
  rulings = thin & (ndimage.maximum(np.broadcast_to(tilts, labels.shape), labels, index) > 0)
  rulings[0] = False
  pixels = np.zeros((h, w), bool)
  for shift, at_tilt in zip(shifts, labels):
    if rulings[at_tilt].any():
      pixels |= rulings[at_tilt][rows - shift]
  return pixels, int(long.sum()), int(thickness[rulings].max(initial=0))


def _strokes(ink: np.ndarray, photo: bool, spread: float | None = None):
  """The connected pieces of strong ink: (labels, count, sizes); refuses an
  image with no clear ink. With the `spread` of the paper's level about the
  lighting estimate (a photo's), strokes must stand SLOPE_CONTRAST of it out."""
  scale = ink.max()
  ink, labels, count, threshold = _pieces(ink)
  if not count:
    raise ImageProblem('blank image: no clear ink found')
  if photo:
    # Paper texture alone makes a noise-like "digit": the strokes must stand out
    # from the paper's grain, from differences of neighbouring pixels (only the
    # few at a stroke's edge differ by more than grain), and from its blotches,
    # the paper's spread away from the strokes (grain that a camera's denoising
    # blurred, which differences miss). Measured: textures alone ~2 grains, blurred
    # noise up to 4.6 blotches above the paper; generated digits 14 grains and
    # more, 7.5 blotches and more where the blotches' spread is under a tenth of
    # the ink's contrast. (Not for cut-out digits: there most pixels are edges,
    # and a blotch is a blurry digit.)
    grain = max(np.median(np.abs(np.diff(ink, axis=0))), np.median(np.abs(np.diff(ink, axis=1))),
                1 / 255) / 0.954
    strokes = labels > 0
    paper = ink[~ndimage.binary_dilation(strokes, iterations=3)]
    blotches = np.median(np.abs(paper - np.median(paper))) / 0.6745 if paper.size else 0
    # Strong ink over half the picture is no digit either: ink is the minority
    # (_photo_paper), so that is paper whose shadow the lighting estimate left behind.
    if strokes.mean() > 0.5:
      raise _ShadowLeft('blank image: no clear ink found')
    low = ink[ink < threshold / 2]  # Empty where the estimate lies under all the paper.
    contrast = np.median(ink[strokes]) - (np.median(low) if low.size else np.inf)
    if (not contrast >= MIN_CONTRAST_OVER_NOISE * grain
        or contrast < MIN_CONTRAST_OVER_BLOTCHES * blotches
        or spread is not None and not contrast * scale >= SLOPE_CONTRAST * spread):
      raise ImageProblem('blank image: no clear ink found')
    ys, xs = np.nonzero(labels)
    longest = _lengths(ndimage.find_objects(labels)).max()
    if longest < SPECK * min(ink.shape):
      raise ImageProblem('blank image: no clear ink found')
    if (max(np.ptp(ys), np.ptp(xs)) + 1 < MIN_MARK * min(ink.shape)
        or longest < MIN_MARK / 2 * min(ink.shape)):
      raise ImageProblem('too small to be a digit: the only marks are dots or dashes; write '
                         'the digit larger, or crop the picture closer around it')
  sizes = ndimage.sum_labels(np.ones_like(ink), labels, np.arange(1, count + 1))
  return labels, count, sizes


def digit_mask(ink: np.ndarray, photo: bool, strokes=None) -> np.ndarray:
  """The pixels of the digit: strong ink, minus specks and far-away marks."""
  labels, count, sizes = strokes or _strokes(ink, photo)
  biggest = int(np.argmax(sizes)) + 1
  main = labels == biggest
  ys, xs = np.nonzero(main)
  extent = max(np.ptp(ys), np.ptp(xs), 1)
  # Other strokes of the same digit (the bar of a 5, a broken 4): big enough and
  # close to the main stroke. Specks and marks far away are dropped.
  gap = ndimage.minimum(ndimage.distance_transform_edt(~main), labels, np.arange(1, count + 1))
  keep = (sizes >= 0.05 * sizes[biggest - 1]) & (np.asarray(gap) < 0.5 * extent)
  keep[biggest - 1] = True
  return np.concatenate([[False], keep])[labels]


def _stroke_width(mask: np.ndarray) -> float:
  """Mean stroke width of a binary shape: area over half the perimeter."""
  area = mask.sum()
  edges = (np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
  return float(2 * area / max(edges, 1))


def _sheet(grey: np.ndarray) -> np.ndarray | None:
  """Where a photo (at WORK_SIZE, smoothed) shows a sheet on a table all around it:
  the sheet's pixels (its convex hull), else None.

  Ink is the minority of a photo (_photo_paper), which a sheet on a table that shows
  all around it can turn upside down: its paper would be read as ink, and a wide
  table passes for strokes. The sheet is the biggest piece of the class of grey
  (Otsu's) that the frame mostly is not, its holes (the digits) filled.
  """
  light = grey > _otsu(grey.ravel())
  paper = ~light if _border(light).mean() >= 0.5 else light
  labels, count = ndimage.label(paper)
  if not count:
    return None
  sheet = ndimage.binary_fill_holes(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
  if not _is_sheet(grey, paper, sheet):
    return None
  # Its convex hull: where a shadow's slope split the paper's grey, the piece's
  # outline is ragged there and can cut through a digit.
  pixels = np.indices(sheet.shape).reshape(2, -1).T
  inside = spatial.Delaunay(_hull(sheet, squares=False)).find_simplex(pixels) >= 0
  return inside.reshape(sheet.shape)


def _hull(mask: np.ndarray, squares: bool = True) -> np.ndarray:
  """The corners of the convex hull of a mask's pixels, in order: of the pixels as
  squares, or of their centres."""
  points = np.argwhere(mask & ~ndimage.binary_erosion(mask))
  if squares:
    points = np.concatenate([points + step for step in ([0, 0], [0, 1], [1, 0], [1, 1])])
  return points[spatial.ConvexHull(points).vertices]


def _is_sheet(grey: np.ndarray, paper: np.ndarray, sheet: np.ndarray) -> bool:
  """Whether `sheet`, a filled piece of the class `paper`, is a sheet on a table (_sheet)."""
  table = ~sheet
  # A piece across the picture is a tight crop's digit.
  if sheet.mean() < SHEET_AREA or table.mean() < SHEET_TABLE or (
      sheet[0].any() and sheet[-1].any()) or (sheet[:, 0].any() and sheet[:, -1].any()):
    return False
  # Over half the picture, the table around it must be of the other grey (paper
  # that a tight crop's strokes enclose has paper of its own grey beyond them), and
  # the two greys two levels (paper in a shadow's slope is one).
  share = paper.mean()
  if sheet.mean() >= 0.5 and (paper[table].mean() > 1 - SHEET_TABLE_GREY or share * (1 - share) * (
      grey[paper].mean() - grey[~paper].mean()) ** 2 < SHEET_LEVELS * grey.var()):
    return False
  length = _lengths(ndimage.find_objects(sheet.astype(int)))[0]
  ink = sheet & ~paper
  if (ndimage.distance_transform_edt(sheet).max() < SHEET_THICK * length or ink.any() and
      ndimage.distance_transform_edt(ink).max() > SHEET_STROKE * length):
    return False
  hull = _hull(sheet)
  # The smallest rectangle around the pixels: one of its sides lies along a side of
  # their convex hull (rotating calipers).
  sides = np.roll(hull, -1, axis=0) - hull
  along = sides / np.linalg.norm(sides, axis=1, keepdims=True)
  rectangle = np.ptp(along @ hull.T, axis=1) * np.ptp(along[:, ::-1] * [1, -1] @ hull.T, axis=1)
  if sheet.sum() < SHEET_RECTANGLE * rectangle.min():
    return False
  # Either side of its edge with the table (the frame is none).
  inner = ndimage.binary_erosion(sheet, iterations=2, border_value=1) & ~ndimage.binary_erosion(
      sheet, iterations=5, border_value=1)
  outer = ndimage.binary_dilation(sheet, iterations=5) & ~ndimage.binary_dilation(sheet, iterations=2)
  step = abs(np.median(grey[inner]) - np.median(grey[outer]))
  return step >= SHEET_STEP * abs(np.median(grey[sheet]) - np.median(grey[table]))


def _ink(grey: np.ndarray) -> tuple[np.ndarray, bool, tuple | None, tuple[slice, slice]]:
  """(ink map at WORK_SIZE at most, whether it is a photo: paper around the
  digits, a photo's _strokes (None for a cut-out), and the (rows, columns) of
  `grey` it maps: all of it, or a sheet on a table (_sheet))."""
  window = slice(0, grey.shape[0]), slice(0, grey.shape[1])
  shrunk = _shrink(grey, WORK_SIZE)
  check_not_blank(grey if grey.size <= WORK_SIZE ** 2 else shrunk)  # A strip keeps its rows.
  if min(shrunk.shape) < PHOTO_SIDE:
    return _cut_out_ink(shrunk), False, None, window
  # Dithering (palette images) and JPEG speckle are not ink.
  smooth = ndimage.gaussian_filter(shrunk, 1.0, mode='nearest')
  sheet = _sheet(smooth)
  if sheet is not None:  # The sheet's box alone, read at WORK_SIZE again, the table
    # showing at its corners (where the sheet is turned) painted over with the
    # paper's level nearest (smoothed) and grain drawn from anywhere on the sheet: no
    # edges, the paper's grain and lighting kept. (Copying the nearest pixels drew
    # grain and dust by the edge out into streaks and dashes, read as strokes.)
    box = ndimage.find_objects(sheet.astype(int))[0]
    scale = grey.shape[0] / shrunk.shape[0], grey.shape[1] / shrunk.shape[1]
    window = tuple(slice(int(part.start * k), int(np.ceil(part.stop * k)))
                   for part, k in zip(box, scale))
    shrunk = _shrink(grey[window], WORK_SIZE)
    inside = _resize(ndimage.binary_erosion(sheet, iterations=3)[box], shrunk.shape) > 0.5
    nearest = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    level = ndimage.gaussian_filter(np.where(inside, shrunk, 0), 3) / np.maximum(
        ndimage.gaussian_filter(inside.astype(float), 3), 1e-9)
    grain = np.random.default_rng(0).choice((shrunk - level)[inside], np.count_nonzero(~inside))
    shrunk = np.where(inside, shrunk, level[tuple(nearest)])
    shrunk[~inside] += grain
    if min(shrunk.shape) < PHOTO_SIDE:
      return _cut_out_ink(shrunk), False, None, window
    smooth = ndimage.gaussian_filter(shrunk, 1.0, mode='nearest')
  # A photo's checks first: paper whose texture or shadow reaches across is refused.
  light, tiles = _photo_paper(smooth)
  ink = lit = _without_rulings(np.clip(light - _paper_level(tiles, light.shape), 0, None))
  try:
    ink = _without_edges(lit)  # Less a table in the frame, if one shows.
    strokes = _strokes(ink, photo=True)
  except _ShadowLeft:  # Again with the lighting's slope followed (faint ink in a
    # deep shadow drowns in a tile's step), where grain can pass the checks for
    # strokes: they must stand out of the paper's spread about the new estimate.
    # Only for paper that fills the picture: the edge of a table, in the frame or
    # around a sheet cut out of it, is a step, not a slope, and the new estimate
    # leaves a sliver of it along the sheet's edge.
    if sheet is not None or (ink < lit).any():
      raise
    residual = light - _paper_level(tiles, light.shape, slope=True)
    ink = _without_edges(_without_rulings(np.clip(residual, 0, None)))
    spread = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    strokes = _strokes(ink, photo=True, spread=spread)
  h, w = ink.shape
  near = TIGHT * min(h, w)
  boxes = ndimage.find_objects(strokes[0])
  marks = [box for box, length in zip(boxes, _lengths(boxes))
           if length >= MIN_MARK / 2 * min(h, w)]  # Specks aside.

  def spans(axis, size):  # From near one edge to near the opposite one.
    return (min(mark[axis].start for mark in marks) < near
            and max(mark[axis].stop for mark in marks) > size - near)

  if not marks or not (spans(0, h) or spans(1, w)):
    return ink, True, strokes, window
  # Ink from edge to edge: a tight crop, no paper around the digit, which may cover
  # most of it (a bold 0), turning a photo's premise (ink is the minority) upside down.
  return _cut_out_ink(shrunk), False, None, window


def to_mnist(grey: np.ndarray) -> np.ndarray:
  """Any greyscale digit image in [0, 1] -> a 28x28 uint8 MNIST-style image."""
  ink, photo, strokes, _ = _ink(grey)
  return _frame(ink, digit_mask(ink, photo, strokes), photo)[0]


def _frame(ink: np.ndarray, mask: np.ndarray, photo: bool) -> tuple[np.ndarray, tuple]:
  """The digit whose strong ink is `mask`, as MNIST drew its digits: (28x28 uint8,
  the (rows, columns) slices of `ink` it was cut from)."""
  ys, xs = np.nonzero(mask)
  box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
  # Keep the soft (anti-aliased) ink around the digit's strokes, nothing else.
  near = ndimage.binary_dilation(mask, np.ones((3, 3)))
  if not photo:  # In a small cut-out every pixel counts: faint edges too.
    ys, xs = np.nonzero(mask | (near & (ink > FAINT_INK * ink.max())))
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
  digit = np.where(near, np.minimum(ink / np.percentile(ink[mask], 90), 1), 0)[box]
  # As MNIST was made: the digit drawn large (at least 4x its final size),
  # strokes thinner than MNIST's thickened there, then area-averaged down so
  # that its longer side is 20 pixels.
  h, w = digit.shape
  fit = lambda side: (max(1, round(h * side / max(h, w))), max(1, round(w * side / max(h, w))))
  if max(h, w) < 4 * DIGIT_BOX:
    # Enlarging blurs: give the strokes back edges (MNIST's are a binary
    # drawing, anti-aliased only by the final shrinking).
    digit = np.clip((_resize(digit, fit(4 * DIGIT_BOX)) - 0.5) * SHARPEN + 0.5, 0, 1)
    width = _stroke_width(digit > 0.5)
  else:
    width = _stroke_width(mask[box])
  missing = STROKE_WIDTH * max(digit.shape) / DIGIT_BOX - width
  if missing >= 2:  # A k x k maximum adds k - 1 pixels to a stroke's width.
    digit = ndimage.grey_dilation(digit, size=2 * int(missing // 2) + 1)
  small = np.clip(_resize(digit, fit(DIGIT_BOX)), 0, None)
  small /= max(small.max(), 1e-6)
  # Centre of mass at the frame's centre, as MNIST was made.
  cy, cx = ndimage.center_of_mass(small)
  oy, ox = int(round((FRAME - 1) / 2 - cy)), int(round((FRAME - 1) / 2 - cx))
  frame = np.zeros((FRAME, FRAME))
  y0, x0 = max(0, -oy), max(0, -ox)
  y1, x1 = min(small.shape[0], FRAME - oy), min(small.shape[1], FRAME - ox)
  frame[y0 + oy:y1 + oy, x0 + ox:x1 + ox] = small[y0:y1, x0:x1]
  return np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8), box


def _group(labels: np.ndarray, count: int, sizes: np.ndarray) -> list[np.ndarray]:
  """The pieces of ink gathered into digits, left to right, as masks (a digit
  much wider than tall may still be several touching ones: see _cut).

  Specks (under 5% of the biggest piece's ink) are dropped. Pieces that overlap
  along x by half the narrower one's width are one digit (a broken 4, the bar of a
  5 above its body). A low piece (under 60% of the tallest one's height: the bar
  of a 5 or 7, a 2's tail) joins the digit nearest along x, if within 30% of that
  height; alone, under 40% of it (a dot, a dash), it is dropped.
  """
  boxes = ndimage.find_objects(labels)
  groups = [[i] for i in range(count) if sizes[i] >= 0.05 * sizes.max()]

  def extent(group, axis):
    return (min(boxes[i][axis].start for i in group), max(boxes[i][axis].stop for i in group))

  def overlap(a, b):
    (a0, a1), (b0, b1) = extent(a, 1), extent(b, 1)
    return min(a1, b1) - max(a0, b0), min(a1 - a0, b1 - b0)

  merged = True
  while merged:  # Until no two groups overlap enough.
    merged = False
    for a, b in itertools.combinations(range(len(groups)), 2):
      shared, narrower = overlap(groups[a], groups[b])
      if shared >= 0.5 * narrower:
        groups[a] += groups.pop(b)
        merged = True
        break
  height = lambda group: extent(group, 0)[1] - extent(group, 0)[0]
  tallest = max(height(g) for g in groups)
  for low in sorted((g for g in groups if height(g) < 0.6 * tallest), key=height):
    others = [g for g in groups if g is not low]
    if not others:
      break
    nearest = min(others, key=lambda g: -overlap(low, g)[0])
    if -overlap(low, nearest)[0] <= 0.3 * tallest:
      nearest += low
      groups.remove(low)
  groups = [g for g in groups if height(g) >= 0.4 * tallest]
  masks = [np.isin(labels, [i + 1 for i in group]) for group in groups]
  return sorted(masks, key=lambda m: np.nonzero(m)[1].mean())


def _cut(mask: np.ndarray, k: int) -> list[np.ndarray]:
  """`mask` cut into k pieces side by side, each cut where the columns near its
  even-spaced place hold least ink."""
  xs = np.nonzero(mask.any(0))[0]
  x0, width = xs.min(), np.ptp(xs) + 1
  columns = mask[:, x0:x0 + width].sum(0)
  cuts = [x0]
  for j in range(1, k):
    centre, reach = j * width // k, max(1, width // (3 * k))
    start = max(centre - reach, 0)  # (A piece under k columns wide has centre 0.)
    cuts.append(x0 + start + int(np.argmin(columns[start:centre + reach + 1])))
  cuts.append(x0 + width)
  pieces = []
  for left, right in zip(cuts[:-1], cuts[1:]):
    piece = np.zeros_like(mask)
    piece[:, left:right] = mask[:, left:right]
    pieces.append(piece)
  return pieces


def _readings(mask: np.ndarray) -> list[list[np.ndarray]]:
  """The ways to read one group of ink: as one digit, and where it is wide enough
  (TOUCHING_WIDTH) to be k touching digits, each at least 0.35 as wide as tall, as k."""
  ys, xs = np.nonzero(mask)
  height, width = np.ptp(ys) + 1, np.ptp(xs) + 1
  ways = [[mask]]
  for k in range(2, 7):
    if width < TOUCHING_WIDTH * height or width < k * 0.35 * height:
      break
    pieces = _cut(mask, k)
    if all(p.any() for p in pieces):
      ways.append(pieces)
  return ways


def read_digits(grey: np.ndarray, classify=None
                ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
  """The digits in a greyscale image in [0, 1], left to right: [(28x28 uint8, box)],
  each box (x0, y0, x1, y1) in the image's pixels.

  One digit unless the ink falls into several groups (see _group); a cut-out
  (under PHOTO_SIDE pixels) is one digit unless at least 1.3 times wider than tall,
  the way a number is. A group wide enough to be touching digits is read each way
  _readings offers, and `classify` (28x28 uint8 [N] -> probabilities [N, 10])
  chooses: the way whose digits' confidences multiply to the most. (Also offering
  two close groups as one digit, for a 4 written in two strokes, lost more numbers
  than it won.) Without it, a group 1.25 times wider than tall is cut into digits
  0.8 times as wide as tall.
  """
  ink, photo, strokes, (rows, columns) = _ink(grey)
  strokes = strokes or _strokes(ink, photo)
  h, w = ink.shape
  scale = (rows.stop - rows.start) / h, (columns.stop - columns.start) / w
  top, left = rows.start, columns.start

  def framed(mask):  # (28x28, its box in the image's pixels)
    digit, (rows, columns) = _frame(ink, mask, photo)
    return digit, (left + int(columns.start * scale[1]), top + int(rows.start * scale[0]),
                   left + int(np.ceil(columns.stop * scale[1])),
                   top + int(np.ceil(rows.stop * scale[0])))

  def one_digit():  # Read as one digit always was.
    return [framed(digit_mask(ink, photo, strokes))]

  if not photo and w < 1.3 * h:
    return one_digit()
  groups = [_readings(g) for g in _group(*strokes)]
  if len(groups) == 1 and len(groups[0]) == 1:
    return one_digit()
  if classify is not None:  # One call for every candidate digit.
    candidates = [[[framed(m) for m in way] for way in ways] for ways in groups]
    confidence = iter(classify(np.stack([d for ways in candidates for way in ways
                                         for d, _ in way])).max(1))
  chosen = []
  for i, ways in enumerate(groups):
    if classify is None:
      ys, xs = np.nonzero(ways[0][0])
      k = int(round((np.ptp(xs) + 1) / (0.8 * (np.ptp(ys) + 1))))
      index = next((j for j, way in enumerate(ways) if len(way) == k), 0) if (
          np.ptp(xs) + 1 >= 1.25 * (np.ptp(ys) + 1)) else 0
      chosen += [framed(m) for m in ways[index]]
    else:
      scores = [np.prod([next(confidence) for _ in way]) for way in ways]
      chosen += candidates[i][int(np.argmax(scores))]
  return one_digit() if len(chosen) == 1 else chosen


def to_grey_array(image) -> np.ndarray:
  """A path, PIL image or array (any size; 2-D grey, or HxWx3/4) -> grey in [0, 1]."""
  if isinstance(image, (str, os.PathLike)):
    image = open_image(os.fspath(image))
  if isinstance(image, Image.Image):
    grey = to_grey(image)
  else:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
      array = array[..., 0]
    if array.ndim not in (2, 3) or array.size == 0:
      raise ImageProblem(f'expected a 2-D image array, got shape {array.shape}')
    if array.dtype != np.uint8:
      array = np.clip(array / max(float(array.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
    grey = to_grey(Image.fromarray(array))
  if min(grey.shape) < 2:
    raise ImageProblem(f'image too small ({grey.shape[1]}x{grey.shape[0]} pixels)')
  return grey


def preprocess(image) -> np.ndarray:
  """A path, PIL image or array (any size; 2-D grey, or HxWx3/4) -> 28x28 uint8:
  the image read as one digit."""
  return to_mnist(to_grey_array(image))


def preprocess_digits(image, classify=None) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
  """A path, PIL image or array -> its digits, left to right (read_digits), each box
  in the picture's own pixels, the picture upright."""
  return read_picture(image, classify)[0]


def read_picture(image, classify=None):
  """preprocess_digits, and the frame of its boxes: the picture's (width, height)
  upright, as its viewer shows it (a phone's photo stored on its side, turned)."""
  if isinstance(image, (str, os.PathLike)):
    image = open_image(os.fspath(image))
  grey = to_grey_array(image)
  found = read_digits(grey, classify)
  h, w = grey.shape
  full = image.info.get(FULL_SIZE) if isinstance(image, Image.Image) else None
  if full is None:
    return found, (w, h)
  if image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):  # A quarter turned.
    full = full[::-1]
  sx, sy = full[0] / w, full[1] / h
  return [(digit, (int(x0 * sx), int(y0 * sy), min(full[0], int(np.ceil(x1 * sx))),
                   min(full[1], int(np.ceil(y1 * sy)))))
          for digit, (x0, y0, x1, y1) in found], full


def image_paths(paths: Sequence[str], problems: list | None = None) -> list[str]:
  """Files as given; folders expanded to their images, recursively, sorted.

  Folders that cannot be read are added to `problems` (as messages).
  """
  out = []
  problems = [] if problems is None else problems
  for path in paths:
    if os.path.isdir(path):
      on_error = lambda e: problems.append(f'{e.filename}: {e.strerror}')
      for root, dirs, files in os.walk(path, onerror=on_error):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
      out.append(path)
  return out


@dataclasses.dataclass
class Predictor:
  """A trained model from a workdir, ready to classify images.

  >>> predictor = Predictor.from_workdir('runs/default')
  >>> predictor(['my_digit.jpg'])  # -> probabilities, shape [1, 10]
  """
  config: object
  apply: object  # Jitted: uint8 [batch, 28, 28, 1] -> probabilities [batch, 10].
  step: int = 0  # The checkpoint's.
  batch: int = BATCH  # Images per model call (the last call padded): one compiled shape.

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None, batch: int = BATCH):
    config = config_lib.load_saved(workdir)
    graphdef, state, _ = inference.restore(workdir, config, step)
    model = nnx.merge(graphdef, state.eval_params, state.model_state)
    apply = jax.jit(lambda x: jax.nn.softmax(model(input_pipeline.normalize(x, config.dataset))))
    return cls(config, apply, int(state.step), batch)

  def classify(self, digits: np.ndarray) -> np.ndarray:
    """Probabilities [N, 10] for 28x28 MNIST-style uint8 images [N, 28, 28].

    Batches of self.batch, the last one padded: one compilation, whatever N.
    """
    digits = np.asarray(digits, np.uint8).reshape(-1, FRAME, FRAME, 1)
    out = []
    for i in range(0, len(digits), self.batch):
      batch = digits[i:i + self.batch]
      padded = np.concatenate([batch, np.zeros((self.batch - len(batch), FRAME, FRAME, 1),
                                                np.uint8)])
      out.append(np.asarray(self.apply(padded))[:len(batch)])
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)

  def __call__(self, images: Iterable, preprocessed: bool = False) -> np.ndarray:
    """Probabilities [N, 10] for images (paths, PIL images or arrays).

    `preprocessed=True` takes 28x28 MNIST-style uint8 arrays as they are.
    """
    return self.classify([np.asarray(i, np.uint8) if preprocessed else preprocess(i)
                          for i in images])

  def answer(self, probabilities: np.ndarray) -> dict:
    """The JSON fields of one prediction: prediction, confidence, probabilities,
    and class_name where the dataset's classes have names (Fashion-MNIST)."""
    names = input_pipeline.CLASS_NAMES[self.config.dataset]
    best = int(np.argmax(probabilities))
    out = {'prediction': best, 'confidence': round(float(probabilities[best]), 4),
           'probabilities': [round(float(x), 4) for x in probabilities]}
    if names[best] != str(best):
      out['class_name'] = names[best]
    return out

  def read(self, found: list, probabilities: np.ndarray) -> dict:
    """The JSON fields of one picture from its preprocess_digits() and their
    probabilities: `number` (the digits read left to right) and `digits` (each
    one's answer and box: x0, y0, x1, y1 in the picture's pixels), and where there
    is one digit, its answer's fields at the top level as well."""
    digits = [{**self.answer(p), 'box': list(box)} for (_, box), p in zip(found, probabilities)]
    out = {'number': ''.join(str(d['prediction']) for d in digits), 'digits': digits}
    if len(digits) == 1:
      out = {**self.answer(probabilities[0]), **out}
    return out

  def predict_files(self, files: Sequence[str], save_preprocessed: str | None = None,
                    out=sys.stdout) -> int:
    """One JSON line per file to `out`, in order; returns how many failed.

    Files are read and preprocessed a batch at a time, then classified together.
    """
    failures = 0
    for start in range(0, len(files), BATCH):
      chunk, found, records = files[start:start + BATCH], [], []
      for i, path in enumerate(chunk, start):
        try:
          found.append(preprocess_digits(path, self.classify))
          records.append({'file': path})
          if save_preprocessed:
            stem = os.path.splitext(os.path.basename(path))[0]
            for j, (digit, _) in enumerate(found[-1]):
              suffix = f'_{j + 1}' if len(found[-1]) > 1 else ''
              _save_png(digit, os.path.join(save_preprocessed, f'{i:04d}_{stem}{suffix}.png'))
        except ImageProblem as e:
          records.append({'file': path, 'error': str(e)})
      probabilities = self.classify([d for digits in found for d, _ in digits])
      pictures, used = iter(found), 0
      for record in records:
        if 'error' in record:
          failures += 1
        else:
          digits = next(pictures)
          record.update(self.read(digits, probabilities[used:used + len(digits)]))
          used += len(digits)
        print(json.dumps(record), file=out, flush=True)
    return failures


def _save_png(digit: np.ndarray, path: str) -> None:
  try:
    Image.fromarray(digit).save(path)
  except OSError as e:
    raise UserError(f'Cannot write the preprocessed image {path}: {e.strerror or e}.') from e


def predict(images: Iterable, workdir: str, step: int | None = None) -> np.ndarray:
  """Probabilities [N, 10] for images (paths, PIL images or arrays), for notebooks."""
  return Predictor.from_workdir(workdir, step)(images)


def predict_files(paths: Sequence[str], workdir: str, step: int | None = None,
                  save_preprocessed: str | None = None, out=sys.stdout) -> int:
  """Writes one JSON object per image to `out`; returns how many failed."""
  problems = []
  files = image_paths(paths, problems)
  if not files:
    raise UserError(f'No images found in {", ".join(paths)} '
                    f'(looked for {", ".join(IMAGE_EXTENSIONS)} in folders)'
                    + (f'; could not read {"; ".join(problems)}.' if problems else '.'))
  for problem in problems:
    logging.warning('Skipped a folder that cannot be read: %s', problem)
  if save_preprocessed:
    try:
      os.makedirs(save_preprocessed, exist_ok=True)
    except OSError as e:
      raise UserError(f'--save_preprocessed={save_preprocessed}: cannot make that folder '
                      f'({e.strerror or e}).') from e
  return Predictor.from_workdir(workdir, step).predict_files(files, save_preprocessed, out)
