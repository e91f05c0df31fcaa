"""The draw-a-digit page in a real browser: Debian's Chromium, driven by Playwright.

.ci/run installs Chromium with apt-get and sets MNIST_JAX_REQUIRE_BROWSER=1, so
in CI a missing browser fails this test instead of skipping it.
"""

import os
import shutil
import urllib.parse

import pytest

from conftest import serving

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
sync_api = pytest.importorskip('playwright.sync_api')
if not CHROMIUM:
  if os.environ.get('MNIST_JAX_REQUIRE_BROWSER') == '1':
    raise RuntimeError('MNIST_JAX_REQUIRE_BROWSER=1 but no chromium on PATH '
                       '(apt-get install chromium).')
  pytest.skip('no chromium on PATH', allow_module_level=True)
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


def test_draw_digits_and_upload_in_chromium(url, mnist, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  errors, requests = [], []
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    try:
      page = browser.new_page(viewport={'width': 390, 'height': 844})  # A phone's screen.
      page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
      page.on('pageerror', lambda e: errors.append(str(e)))
      page.on('request', lambda r: requests.append(r.url))
      page.goto(url)
      sync_api.expect(page.locator('#model')).to_contain_text('Model:')
      assert 'tiny' in page.locator('#model').text_content()
      assert page.locator('#bars li').count() == 10

      stroke(page, [(0.52, 0.15), (0.5, 0.5), (0.48, 0.85)])  # A 1: one stroke down.
      assert answer(page) == '1'
      status = page.locator('#status').text_content()
      assert page.locator('#bars li').count() == 10
      assert page.locator('#seen').is_visible()

      page.click('#clear')
      assert page.locator('#prediction').text_content() == '?'
      # A 7 as most people draw it: the bar left to right, then down to the left.
      stroke(page, [(0.22, 0.2), (0.5, 0.19), (0.78, 0.2), (0.62, 0.5), (0.47, 0.85)])
      assert answer(page, status) == '7'
      widths = page.eval_on_selector_all('#bars .fill', 'els => els.map(e => e.style.width)')
      assert len(widths) == 10 and max(widths, key=lambda w: float(w[:-1])) == widths[7]
      page.screenshot(path=SCREENSHOT or str(tmp_path / 'page.png'), full_page=True)

      page.keyboard.press('Escape')  # The keyboard clears too.
      assert page.locator('#prediction').text_content() == '?'

      test = mnist['test']  # Upload a photo-like picture of a known digit.
      index = int((test.labels == 4).argmax())
      picture = tmp_path / 'four.png'
      Image.fromarray(255 - test.images[index, ..., 0]).resize((200, 200)).save(picture)
      status = page.locator('#status').text_content()
      page.set_input_files('#file', str(picture))
      assert answer(page, status) == '4'
      assert 'four.png' in page.locator('#status').text_content()
    finally:
      browser.close()
  assert not errors, errors
  hosts = {urllib.parse.urlparse(u).hostname for u in requests if not u.startswith('data:')}
  assert hosts == {'127.0.0.1'}, requests
