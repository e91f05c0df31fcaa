"""--mode=serve: the JSON API in-process (Starlette's test client) and the server process."""

import base64
import concurrent.futures
import io
import json
import os
import select
import signal
import socket
import struct
import threading
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
import uvicorn

from conftest import free_port, serving, start_server, turned
from mnist_jax import predict, serve

starlette_testclient = pytest.importorskip('starlette.testclient')


def png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def mnist_png(digit: np.ndarray) -> bytes:
  """An MNIST test digit as a person's picture: dark ink on white paper, 5x larger."""
  return png(Image.fromarray(255 - digit[..., 0]).resize((140, 140), Image.Resampling.BILINEAR))


def drawn(points, size=280, width=20) -> bytes:
  """A digit drawn as strokes through `points` (fractions of the picture), as on the page."""
  image = Image.new('L', (size, size), 255)
  ImageDraw.Draw(image).line([(x * size, y * size) for x, y in points], fill=0, width=width,
                             joint='curve')
  return png(image)


ONE = [(0.5, 0.15), (0.5, 0.85)]
SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]


@pytest.fixture(scope='module')
def client(digit_model):
  with starlette_testclient.TestClient(serve.create_app(digit_model)) as c:
    yield c


def post(client, data: bytes, name='digit.png', field='image'):
  return client.post('/api/predict', files={field: (name, data, 'image/png')})


def preview_image(url: str) -> Image.Image:
  """The picture in a preview's JPEG data URL."""
  header, encoded = url.split(',')
  assert header == 'data:image/jpeg;base64'
  return Image.open(io.BytesIO(base64.b64decode(encoded)))


def test_known_digits_get_their_answers(client, digit_model, mnist):
  test = mnist['test']
  pictures = [mnist_png(test.images[i]) for i in range(20)]
  answers = [post(client, p).json() for p in pictures]
  correct = sum(a['number'] == str(label) for a, label in zip(answers, test.labels[:20]))
  assert correct >= 19, [a['number'] for a in answers]
  # The same answer as --mode=predict's for the same picture.
  predictor = predict.Predictor.from_workdir(digit_model)
  for picture, answer in zip(pictures, answers):
    expected = predictor.classify([d for d, _ in predict.preprocess_digits(
        predict.open_bytes(picture), predictor.classify)])
    np.testing.assert_allclose([d['probabilities'] for d in answer['digits']], expected,
                               atol=2e-4)
  for drawing, label in ((ONE, 1), (SEVEN, 7)):
    answer = post(client, drawn(drawing)).json()
    assert answer['prediction'] == label and answer['number'] == str(label), answer
  first = next(a for a in answers if len(a['digits']) == 1)
  assert set(first) == {'prediction', 'confidence', 'probabilities', 'preprocessed', 'number',
                        'digits', 'size'}
  assert first['size'] == [140, 140] and first['digits'][0]['box'][2] <= 140
  assert len(first['probabilities']) == 10 and abs(sum(first['probabilities']) - 1) < 1e-3
  seen = Image.open(io.BytesIO(base64.b64decode(first['preprocessed'])))
  assert seen.size == (28, 28) and np.asarray(seen).max() == 255


def test_a_number_gets_each_digit_with_its_box_and_a_dot_is_refused(client):
  """A 1 and a 7 side by side: the number, each digit's answer, image and box."""
  wide = Image.new('L', (560, 280), 255)
  draw = ImageDraw.Draw(wide)
  for points, left in ((ONE, 0), (SEVEN, 280)):
    draw.line([(left + x * 280, y * 280) for x, y in points], fill=0, width=20, joint='curve')
  answer = post(client, png(wide)).json()
  assert answer['number'] == '17' and 'prediction' not in answer, answer
  (x0, _, x1, _), (x2, _, x3, _) = (d['box'] for d in answer['digits'])
  assert x0 < 140 < x1 <= x2 < 280 + 0.45 * 280 < x3 <= 560  # Around each digit, in order.
  for digit in answer['digits']:
    assert len(digit['probabilities']) == 10 and digit['preprocessed']
  # A phone's JPEG stored on its side (EXIF orientation 6): the boxes' frame is the
  # picture as the page shows it, upright (the page lays the boxes over it).
  photo = io.BytesIO()
  wide.transpose(Image.Transpose.ROTATE_90).save(photo, 'JPEG', exif=turned(6))
  answer_turned = post(client, photo.getvalue(), 'photo.jpg').json()
  assert answer_turned['size'] == [560, 280] and answer_turned['number'] == '17', answer_turned
  np.testing.assert_allclose([d['box'] for d in answer_turned['digits']],
                             [d['box'] for d in answer['digits']], atol=3)
  # Asked for, the picture as the server read it, upright (for a browser that cannot
  # decode it); not otherwise.
  assert 'preview' not in answer_turned
  with_preview = client.post('/api/predict', data={'preview': '1'},
                             files={'image': ('photo.jpg', photo.getvalue(), 'image/jpeg')}).json()
  assert preview_image(with_preview['preview']).size == (560, 280)
  dot = Image.new('L', (280, 280), 255)
  ImageDraw.Draw(dot).ellipse((130, 130, 150, 150), fill=0)
  response = post(client, png(dot))
  assert response.status_code == 422 and 'too small to be a digit' in response.json()['error']


def bomb() -> bytes:
  """A 1 KB PNG that claims 30000x30000 pixels (900 megapixels)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))
  header = struct.pack('>IIBBBBB', 30000, 30000, 8, 0, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
          + chunk(b'IDAT', zlib.compress(b'\x00' * 30001 * 20)) + chunk(b'IEND', b''))


def test_bad_requests_get_a_4xx_and_the_server_goes_on(client):
  good = drawn(SEVEN)
  cases = {
      'not an image': (post(client, b'hello, this is text', 'a.txt'), 400, 'not a readable image'),
      'blank': (post(client, png(Image.new('L', (200, 200), 255))), 422, 'blank'),
      'truncated': (post(client, good[:len(good) // 2]), 400, 'not a readable image'),
      'empty': (post(client, b''), 400, 'empty file'),
      'missing field': (post(client, good, field='picture'), 400, 'no file in the field'),
      'not multipart': (client.post('/api/predict', content=good,
                                    headers={'content-type': 'image/png'}), 400, 'multipart'),
      'bomb': (post(client, bomb()), 400, 'too large'),
      'too large': (post(client, good + b'\0' * serve.MAX_UPLOAD_BYTES), 413,
                    'upload too large: at most 10 MB'),
      # Exactly the limit is allowed (then found to be no multipart body).
      'at the limit': (client.post('/api/predict', content=b'\0' * serve.MAX_UPLOAD_BYTES,
                                   headers={'content-type': 'multipart/form-data; boundary=x'}),
                       400, 'could not read the upload'),
  }
  for name, (response, status, message) in cases.items():
    assert response.status_code == status, (name, response.text)
    assert message in response.json()['error'], (name, response.json())
    assert '<' not in response.json()['error'], (name, response.json())  # No Python objects.
    assert post(client, good).json()['prediction'] == 7, name  # Still serving.


def test_fifty_concurrent_requests_are_all_answered(client, mnist):
  test = mnist['test']
  pictures = [mnist_png(test.images[i]) for i in range(50)]
  alone = [post(client, p).json()['digits'] for p in pictures]
  with concurrent.futures.ThreadPoolExecutor(50) as pool:
    together = list(pool.map(lambda p: post(client, p).json()['digits'], pictures))
  assert together == alone


def test_model_and_health(client, digit_model):
  info = client.get('/api/model').json()
  assert info['dataset'] == 'mnist' and info['class_names'] == [str(i) for i in range(10)]
  assert info['step'] == 400 and info['config'].startswith('tiny (')
  assert 'train_steps_per_epoch=400' in info['config'] and 0.9 < info['test_accuracy'] <= 1
  assert client.get('/healthz').json() == {'status': 'ok'}
  assert info['workdir'] == os.path.basename(digit_model)  # Not where it is on the server.
  page = client.get('/')
  assert page.status_code == 200 and '<canvas' in page.text
  assert "default-src 'self'" in page.headers['content-security-policy']
  assert "frame-ancestors 'none'" in page.headers['content-security-policy']
  assert page.headers['x-frame-options'] == 'DENY'  # No other site may frame the page.
  for response, status in ((client.get('/api/nothing'), 404), (client.get('/api/predict'), 405)):
    assert response.status_code == status and response.json()['error'], response.text
  for name in ('app.js', 'style.css'):
    assert client.get(f'/static/{name}').status_code == 200


def test_config_name_is_the_closest_file_and_what_it_changed():
  from configs import default, mlp  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  assert serve.config_name(config) == 'default'
  config.seed, config.data_dir = 3, '/elsewhere'  # Where the data is says nothing.
  assert serve.config_name(config) == 'default (seed=3)'
  config = mlp.get_config()
  config.num_epochs = 1
  assert serve.config_name(config) == 'mlp (num_epochs=1)'


def test_samples_are_each_class_s_first_test_digit_and_two_numbers(client, mnist):
  """The page's pictures to click: dark ink on white paper, read as their labels."""
  samples = client.get('/api/samples').json()['samples']
  assert [s['label'] for s in samples] == [*'0123456789', *serve.SAMPLE_NUMBERS]
  files = [base64.b64decode(s['image']) for s in samples]
  pictures = [np.asarray(Image.open(io.BytesIO(f))) for f in files]
  test = mnist['test']
  first = [test.images[np.argmax(test.labels == c), ..., 0] for c in range(10)]
  for c in range(10):
    np.testing.assert_array_equal(pictures[c], 255 - first[c])
  for picture, number in zip(pictures[10:], serve.SAMPLE_NUMBERS):
    # Each digit cut to its ink's columns, 4 pixels apart, 4 blank columns either side.
    widths = [np.ptp(np.nonzero(first[int(d)].max(0))[0]) + 1 for d in number]
    assert picture.shape == (28, sum(widths) + 4 * (len(number) - 1) + 8), number
    assert (picture[:, :4] == 255).all() and (picture[:, -4:] == 255).all(), number
  answers = [post(client, f).json()['number'] for f in files]
  assert sum(a == s['label'] for a, s in zip(answers, samples)) >= 10, answers


@pytest.fixture(scope='module')
def server(digit_model):
  with serving(digit_model) as running:
    yield running


def test_upload_over_the_limit_is_cut_off_before_it_is_read(server):
  """A chunked body (no Content-Length) gets its 413 once past the limit, not
  after the 100 MB on offer."""
  _, port = server
  with socket.create_connection(('127.0.0.1', port)) as sock:
    sock.sendall(b'POST /api/predict HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: '
                 b'chunked\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n')
    part = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            b'Content-Type: image/png\r\n\r\n')
    sock.sendall(b'%x\r\n%s\r\n' % (len(part), part))
    sent = 0
    while sent < 100 * 2**20 and not select.select([sock], [], [], 0)[0]:
      try:
        sock.sendall(b'100000\r\n' + b'\0' * 2**20 + b'\r\n')
      except OSError:  # The server closed the connection.
        break
      sent += 2**20
    status = sock.recv(4096).split(b'\r\n')[0]
  assert b' 413 ' in status, status
  assert sent <= serve.MAX_UPLOAD_BYTES + 8 * 2**20, sent  # The limit, plus socket buffers.


def test_an_upload_declared_too_large_is_refused_before_its_body(server):
  """Content-Length over the limit: 413 at once, with no byte of the body sent (a limit
  that counted the body as it came would wait for it)."""
  _, port = server
  with socket.create_connection(('127.0.0.1', port)) as sock:
    sock.settimeout(10)
    sock.sendall(b'POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: '
                 b'multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n'
                 % (serve.MAX_UPLOAD_BYTES + 1))
    assert b' 413 ' in sock.recv(4096).split(b'\r\n')[0]


def test_port_in_use_is_one_message_and_ctrl_c_stops(server, digit_model):
  proc, port = server
  second = start_server(digit_model, port)
  out = second.communicate(timeout=120)[0]
  assert second.returncode == 1 and f'Cannot listen on 127.0.0.1:{port}' in out, out
  assert 'Traceback' not in out
  proc.send_signal(signal.SIGINT)  # ctrl-C
  out = proc.communicate(timeout=60)[0]
  assert proc.returncode == 0, out
  assert 'Serving tiny' in out and 'Traceback' not in out, out


def test_a_client_that_never_sends_its_request_head_is_dropped():
  """One that opens a connection and sends nothing, or half a head, holds it for
  HEAD_TIMEOUT_S at most; a whole request on the same server is answered."""
  app = Starlette(routes=[Route('/', lambda request: JSONResponse({'ok': 1}))])
  port = free_port()
  server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning',
                                         http=serve.head_timeout_protocol(0.5)))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  try:
    deadline = time.time() + 30
    while not server.started:
      assert time.time() < deadline
      time.sleep(0.05)
    silent = socket.create_connection(('127.0.0.1', port))
    slow = socket.create_connection(('127.0.0.1', port))
    slow.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n')  # And never the rest.
    for sock in (silent, slow):
      sock.settimeout(5)
      assert sock.recv(100) == b''  # Closed by the server, well before 5 s.
      sock.close()
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=5) as r:
      assert json.load(r) == {'ok': 1}
  finally:
    server.should_exit = True
    thread.join(10)


def test_a_preview_shows_what_a_16_bit_scan_holds():
  """A 16-bit TIFF (which no browser decodes) in values above 255: the preview shows
  its dark ink on light paper, as predict reads it, not one clipped white."""
  scan = np.full((60, 80), 3000, np.uint16)
  scan[20:40, 20:60] = 200
  buffer = io.BytesIO()
  Image.fromarray(scan).save(buffer, 'TIFF')
  shown = np.asarray(preview_image(serve.preview_url(Image.open(io.BytesIO(buffer.getvalue()))))
                     .convert('L'))
  assert shown[30, 40] < 50 and shown[5, 5] > 200, (shown[30, 40], shown[5, 5])
