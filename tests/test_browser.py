"""The draw-a-digit page in a real browser: Debian's Chromium, driven by Playwright.

.ci/run installs Chromium with apt-get and sets MNIST_JAX_REQUIRE_BROWSER=1, so
in CI a missing browser fails this test instead of skipping it.
"""

import os
import shutil
import urllib.parse

import numpy as np
import pytest

from conftest import serving, turned
from mnist_jax import input_pipeline

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
if os.environ.get('MNIST_JAX_REQUIRE_BROWSER') == '1':  # CI: a missing tool is a failure.
  from playwright import sync_api  # pylint: disable=g-import-not-at-top
  if not CHROMIUM:
    raise RuntimeError('MNIST_JAX_REQUIRE_BROWSER=1 but no chromium on PATH '
                       '(apt-get install chromium).')
sync_api = pytest.importorskip('playwright.sync_api', reason='no Playwright (pip install '
                               '-e .[test]): the browser test')
if not CHROMIUM:
  pytest.skip('no chromium on PATH (apt-get install chromium): the browser test',
              allow_module_level=True)
# Where to keep a screenshot for the README (default: the test's temporary folder).
SCREENSHOT = os.environ.get('MNIST_JAX_SCREENSHOT')


@pytest.fixture(scope='module')
def url(digit_model):
  with serving(digit_model) as (_, port):
    yield f'http://127.0.0.1:{port}/'


def stroke(page, points, jitter=1.5):
  """One pen stroke through `points` (fractions of the canvas), moved as a hand moves:
  many small steps, slightly off the straight line."""
  box = page.locator('#canvas').bounding_box()
  at = lambda x, y, i=0: (box['x'] + x * box['width'] + jitter * ((i * 7919) % 5 - 2) / 2,
                          box['y'] + y * box['height'] + jitter * ((i * 104729) % 5 - 2) / 2)
  page.mouse.move(*at(*points[0]))
  page.mouse.down()
  for i, point in enumerate(points[1:], 1):
    page.mouse.move(*at(*point, i), steps=12)
  page.mouse.up()


def answer(page, previous=None):
  """Waits for the page's answer to a new drawing or upload; returns the digit shown."""
  status = page.locator('#status')
  if previous is not None:
    sync_api.expect(status).not_to_have_text(previous, timeout=30_000)
  sync_api.expect(status).to_contain_text(' as ', timeout=30_000)
  return page.locator('#prediction').text_content()


def bars(page):
  """Each bar as the browser drew it: its fill's rendered width as a percentage of its
  track's, the percentage written beside it, and its class."""
  return page.eval_on_selector_all('#bars li', """items => items.map(li => ({
      drawn: 100 * li.querySelector('.fill').getBoundingClientRect().width /
             li.querySelector('.track').getBoundingClientRect().width,
      written: parseFloat(li.querySelector('.value').textContent),
      kind: li.className}))""")


DARK_PIXELS = """() => {
    const c = document.getElementById('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] < 128;
    return n;
}"""


def dark_pixels(page):
  """How many of the canvas's pixels are dark: ink drawn or a picture shown."""
  return page.evaluate(DARK_PIXELS)


def inside_first_screen(page, selector):
  box = page.locator(selector).bounding_box()
  viewport = page.viewport_size
  return (page.evaluate('window.scrollY') == 0 and box['y'] >= 0 and box['x'] >= 0
          and box['y'] + box['height'] <= viewport['height']
          and box['x'] + box['width'] <= viewport['width'])


def button_rows(page):
  """The vertical middles of the visible buttons' text, rounded to whole pixels."""
  return page.eval_on_selector_all('.buttons > button, .buttons > label', """els =>
      els.filter(e => e.offsetParent).map(e => {
        const r = document.createRange();
        r.selectNodeContents(e);
        const t = r.getBoundingClientRect();
        return Math.round(t.top + t.height / 2);
      })""")


def layers(page, tmp_path):
  """The drawing and its boxes as the screen shows them: RGB pixels, and where the
  boxes' colours (green, amber) are."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  shot = tmp_path / 'layers.png'
  page.locator('.layers').screenshot(path=str(shot))
  pixels = np.asarray(Image.open(shot).convert('RGB')).astype(int)
  r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
  return pixels, ((g > 120) & (r < 80) & (b < 100)) | ((r > 180) & (g > 120) & (g < 190) & (b < 60))


def box_pixels(page, tmp_path):
  """How many pixels of the boxes' colours the screen shows over the drawing's left
  and right halves."""
  _, coloured = layers(page, tmp_path)
  half = coloured.shape[1] // 2
  return int(coloured[:, :half].sum()), int(coloured[:, half:].sum())


def assert_boxes_span_the_ink(page, tmp_path):
  """On the screen, the boxes span the columns the dark ink spans (within 15 px)."""
  pixels, coloured = layers(page, tmp_path)
  span = lambda mask: np.flatnonzero(mask.any(0))[[0, -1]].tolist()
  (box_left, box_right), (ink_left, ink_right) = span(coloured), span(pixels.max(-1) < 90)
  assert abs(box_left - ink_left) < 15 and abs(box_right - ink_right) < 15, (
      box_left, box_right, ink_left, ink_right)


def photographed_number(digits, rng):
  """MNIST digits side by side, written dark on grey paper with noise and a shadow,
  saved as a JPEG as a phone would: a picture of a number."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  ink = input_pipeline.side_by_side(digits, [6] * (len(digits) - 1), margin=(8, 12))
  ink = np.asarray(Image.fromarray(ink).resize(
      (ink.shape[1] * 5, ink.shape[0] * 5), Image.Resampling.BICUBIC)) / 255
  paper = 0.8 - np.linspace(0, 0.15, ink.shape[1])[None] + rng.normal(0, 0.02, ink.shape)
  grey = paper * (1 - ink) + 0.1 * ink
  return Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert('RGB')


def test_draw_digits_and_upload_in_chromium(url, mnist, digit_model, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  errors, requests = [], []
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    try:
      # A phone: its screen, touch, and a camera behind "Take a photo".
      page = browser.new_context(viewport={'width': 390, 'height': 844}, has_touch=True,
                                 is_mobile=True).new_page()
      page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
      page.on('pageerror', lambda e: errors.append(str(e)))
      page.on('request', lambda r: requests.append(r.url))
      page.goto(url)
      sync_api.expect(page.locator('#model')).to_contain_text('Model:')
      assert 'tiny' in page.locator('#model').text_content()
      assert page.locator('#bars li').count() == 10
      assert page.locator('label[for=camera]').is_visible()
      rows = button_rows(page)  # Four buttons, in one row, their text level.
      assert len(rows) == 4 and max(rows) - min(rows) <= 1, rows

      stroke(page, [(0.52, 0.15), (0.5, 0.5), (0.48, 0.85)])  # A 1: one stroke down.
      assert answer(page) == '1'
      status = page.locator('#status').text_content()
      assert page.locator('#bars li').count() == 10
      # The 28x28 image decoded, and the answer and that image on the first screen.
      assert page.eval_on_selector('#seen', 'img => img.naturalWidth') == 28
      assert inside_first_screen(page, '.verdict') and inside_first_screen(page, '#seen')

      page.click('#clear')
      assert page.locator('#prediction').text_content() == '?' and dark_pixels(page) == 0
      # A 7 as most people draw it: the bar left to right, then down to the left.
      stroke(page, [(0.22, 0.2), (0.5, 0.19), (0.78, 0.2), (0.62, 0.5), (0.47, 0.85)])
      assert answer(page, status).rstrip('?') == '7'
      drawn = bars(page)
      for bar in drawn:  # Each bar as long as its probability.
        assert abs(bar['drawn'] - bar['written']) <= 1.5, drawn
      assert drawn[7]['kind'] == 'best' and drawn[7]['drawn'] == max(b['drawn'] for b in drawn)
      assert drawn[7]['drawn'] > 30, drawn
      # The winner's bar is green on the screen.
      shot = tmp_path / 'bar.png'
      page.locator('#bars li.best .fill').screenshot(path=str(shot))
      r, g, b = Image.open(shot).convert('RGB').getpixel((2, 5))
      assert g > 120 and r < 80 and b < 100, (r, g, b)

      page.keyboard.press('Escape')  # The keyboard clears too.
      assert page.locator('#prediction').text_content() == '?'

      # A number: a 1 and a 7 written side by side.
      status = page.locator('#status').text_content()
      stroke(page, [(0.27, 0.3), (0.26, 0.5), (0.25, 0.72)])
      stroke(page, [(0.5, 0.3), (0.65, 0.29), (0.8, 0.3), (0.7, 0.5), (0.62, 0.72)])
      assert answer(page, status).rstrip('?') == '17'
      assert page.locator('#digits li').count() == 2
      assert '2 digits' in page.locator('#status').text_content()
      left, right = box_pixels(page, tmp_path)  # A box drawn over each digit, on screen.
      assert left > 100 and right > 100, (left, right)
      assert inside_first_screen(page, '.verdict')
      page.locator('#digits li button').nth(1).click()  # That digit's own bars.
      assert bars(page)[7]['kind'] == 'best'

      # A dot alone is not a digit.
      page.click('#clear')
      status = page.locator('#status').text_content()
      stroke(page, [(0.5, 0.5), (0.505, 0.5)])
      sync_api.expect(page.locator('#status')).to_contain_text('too small to be a digit',
                                                               timeout=30_000)
      assert page.locator('#prediction').text_content() == '?'
      assert box_pixels(page, tmp_path) == (0, 0)

      # A photographed number, from the model's clearest test digits.
      from mnist_jax import predict  # pylint: disable=g-import-not-at-top
      test = mnist['test']
      probabilities = predict.Predictor.from_workdir(digit_model).classify(test.images[:200])
      clear = np.flatnonzero((probabilities.max(1) > 0.98)
                             & (probabilities.argmax(1) == test.labels[:200]))[:3]
      # Stored on its side, as phones store photos, with EXIF saying to turn it.
      photo = photographed_number(test.images[clear, ..., 0], np.random.default_rng(0)).transpose(
          Image.Transpose.ROTATE_90)
      photo.save(tmp_path / 'number.jpg', quality=85, exif=turned(6))
      status = page.locator('#status').text_content()
      page.set_input_files('#file', str(tmp_path / 'number.jpg'))
      number = ''.join(str(l) for l in test.labels[clear])
      assert answer(page, status).rstrip('?') == number
      assert page.locator('#digits li').count() == 3
      assert dark_pixels(page) > 1000  # The photo, on the canvas, upright,
      assert sum(box_pixels(page, tmp_path)) > 300  # with a box over each digit,
      assert_boxes_span_the_ink(page, tmp_path)  # where the digits are.
      # The same as an iPhone's HEIC, which Chromium cannot decode: the page asks for
      # the server's view of it and shows that, upright, the boxes over its digits.
      photo.save(tmp_path / 'number.heic', exif=turned(6))
      status = page.locator('#status').text_content()
      with page.expect_response('**/api/predict') as sent:
        page.set_input_files('#file', str(tmp_path / 'number.heic'))
      assert sent.value.json()['preview'].startswith('data:image/jpeg;base64,')
      assert answer(page, status).rstrip('?') == number
      page.wait_for_function(f'() => ({DARK_PIXELS})() > 1000', timeout=10_000)
      assert_boxes_span_the_ink(page, tmp_path)

      # The samples: test images to click.
      assert page.locator('#sample-list button').count() == 12  # 0-9, 2026 and 314.
      status = page.locator('#status').text_content()
      page.locator('#sample-list button[title$="2026"]').click()
      answer(page, status)
      assert 'the sample 2026' in page.locator('#status').text_content()
      assert page.locator('#digits li').count() == 4

      test = mnist['test']  # Upload a photo-like picture of a known digit.
      index = int((test.labels == 4).argmax())
      picture = tmp_path / 'four.png'
      Image.fromarray(255 - test.images[index, ..., 0]).resize((200, 200)).save(picture)
      status = page.locator('#status').text_content()
      page.set_input_files('#file', str(picture))
      assert answer(page, status).rstrip('?') == '4'
      assert 'four.png' in page.locator('#status').text_content()
      assert dark_pixels(page) > 2000  # The picture itself, on the canvas.

      notes = tmp_path / 'notes.txt'  # Not a picture: a plain sentence, no Python object.
      notes.write_text('my shopping list')
      page.set_input_files('#file', str(notes))
      sync_api.expect(page.locator('#status')).to_contain_text('not a readable image: not a PNG',
                                                               timeout=30_000)
      assert '<' not in page.locator('#status').text_content()
      assert page.locator('#prediction').text_content() == '?'

      # A desktop: no camera button, and the buttons' text on one line.
      desktop = browser.new_page(viewport={'width': 1280, 'height': 800})
      desktop.goto(url)
      sync_api.expect(desktop.locator('#model')).to_contain_text('Model:')
      assert not desktop.locator('label[for=camera]').is_visible()
      rows = button_rows(desktop)
      assert len(rows) == 3 and max(rows) - min(rows) <= 1, rows
      stroke(desktop, [(0.22, 0.2), (0.5, 0.19), (0.78, 0.2), (0.62, 0.5), (0.47, 0.85)])
      answer(desktop)
      status = desktop.locator('#status').text_content()
      desktop.locator('#sample-list button[title$="2026"]').click()
      answer(desktop, status)
      desktop.screenshot(path=SCREENSHOT or str(tmp_path / 'page.png'), full_page=True)

      # An unsure answer (the server's reply replaced by one split between 4 and 9) is
      # said as doubt, the runner-up named and its bar drawn in its own colour.
      unsure = [0.01] * 10
      unsure[4], unsure[9] = 0.5, 0.42
      desktop.route('**/api/predict', lambda route: route.fulfill(json={
          'prediction': 4, 'confidence': 0.5, 'probabilities': unsure,
          'preprocessed': ''}))
      status = desktop.locator('#status').text_content()
      stroke(desktop, [(0.3, 0.3), (0.7, 0.7)])
      answer(desktop, status)
      assert desktop.locator('#prediction').text_content() == '4?'
      assert 'maybe 4, or 9 (42.0%)' in desktop.locator('#status').text_content()
      drawn = bars(desktop)
      assert [b['kind'] for b in drawn].count('second') == 1 and drawn[9]['kind'] == 'second'
      assert abs(drawn[9]['drawn'] - 42) <= 1.5
      shot = tmp_path / 'second.png'
      desktop.locator('#bars li.second .fill').screenshot(path=str(shot))
      r, g, b = Image.open(shot).convert('RGB').getpixel((2, 5))
      assert r > 180 and 120 < g < 190 and b < 60, (r, g, b)  # Amber, not the winner's green.
    finally:
      browser.close()
  # The errors the browser logs itself: the 422 answer to the dot, the 400 to the text file.
  assert [e for e in errors if 'status of 400' not in e and 'status of 422' not in e] == [], errors
  hosts = {urllib.parse.urlparse(u).hostname for u in requests if not u.startswith('data:')}
  assert hosts == {'127.0.0.1'}, requests
