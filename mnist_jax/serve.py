"""`--mode=serve`: a page to draw a digit on and watch the answer, and a JSON API.

Starlette (the ASGI toolkit FastAPI is built on) on uvicorn: three JSON
endpoints and static files need its routing, multipart parsing and test client,
not FastAPI's schema layer. The page is plain HTML, CSS and JavaScript in
`mnist_jax/web/`, served from here; it loads nothing from any other host.

  GET  /              the page
  POST /api/predict   multipart/form-data, the picture in field `image` -> the JSON
                      of a --mode=predict line (`number`, `digits` with their boxes,
                      and one digit's answer at the top level), plus `preprocessed`:
                      each 28x28 image the model saw, as a base64 PNG, and `size`
  GET  /api/model     which model answers: config, dataset, classes, step, accuracy
  GET  /api/samples   test digits (and numbers) to try, as base64 PNGs
  GET  /healthz       {"status": "ok"}

A bad request gets a 4xx with {"error": "..."} (an unknown path or method too);
the server keeps serving.
"""

import base64
import errno
import importlib
import io
import os
import socket

from absl import logging
import numpy as np
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

import configs
from mnist_jax import config_lib, input_pipeline, predict, workdir as workdir_lib
from mnist_jax.errors import UserError

MAX_UPLOAD_BYTES = 10 * 2**20
PREVIEW_SIDE = 560  # Twice the page's canvas: sharp on a phone's screen.
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'web')
# The page may load only what this server serves (and draw images it made).
# No other site may show it in a frame (clickjacking).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
# A client gets this long to send a request's head, on a new connection and between
# requests on a kept one; one that sends nothing, or a byte now and then, is dropped.
HEAD_TIMEOUT_S = 10


class _TooLarge(Exception):
  pass


class LimitUploads:
  """ASGI middleware: a request body over `max_bytes` is refused with 413 before it
  is read: at once where Content-Length says so, else as soon as it passes the limit."""

  def __init__(self, app, max_bytes: int):
    self.app, self.max_bytes = app, max_bytes

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    length = dict(scope['headers']).get(b'content-length', b'0')
    if length.isdigit() and int(length) > self.max_bytes:
      return await _too_large()(scope, receive, send)
    seen = 0

    async def limited():
      nonlocal seen
      message = await receive()
      seen += len(message.get('body', b''))
      if seen > self.max_bytes:
        raise _TooLarge()
      return message

    try:
      await self.app(scope, limited, send)
    except _TooLarge:
      await _too_large()(scope, receive, send)


class SecurityHeaders:
  """ASGI middleware: every response carries CONTENT_SECURITY_POLICY."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    async def with_headers(message):
      if message['type'] == 'http.response.start':
        message['headers'] = [*message.get('headers', []),
                              (b'content-security-policy', CONTENT_SECURITY_POLICY.encode()),
                              (b'x-frame-options', b'DENY'),  # For browsers without CSP 3.
                              (b'x-content-type-options', b'nosniff')]
      await send(message)

    await self.app(scope, receive, with_headers if scope['type'] == 'http' else send)


def head_timeout_protocol(seconds: float):
  """uvicorn's h11 protocol, closing a connection whose request head has not come
  in `seconds` (uvicorn bounds only the idle time after a response)."""

  class HeadTimeout(H11Protocol):
    _head_timer = None

    def _expect_head(self):
      if self._head_timer is not None:
        self._head_timer.cancel()
      self._head_timer = self.loop.call_later(seconds, self._head_late)

    def _head_late(self):
      waiting = self.cycle is None or self.cycle.response_complete  # No request under way.
      if waiting and not self.transport.is_closing():
        self.transport.close()

    def connection_made(self, transport):
      super().connection_made(transport)
      self._expect_head()

    def on_response_complete(self):
      super().on_response_complete()
      self._expect_head()

    def connection_lost(self, exc):
      if self._head_timer is not None:
        self._head_timer.cancel()
      super().connection_lost(exc)

  return HeadTimeout


def _too_large():
  return JSONResponse({'error': f'upload too large: at most {MAX_UPLOAD_BYTES // 2**20} MB'},
                      status_code=413, headers={'Connection': 'close'})


def png_base64(digit: np.ndarray) -> str:
  buffer = io.BytesIO()
  Image.fromarray(digit).save(buffer, format='PNG')
  return base64.b64encode(buffer.getvalue()).decode('ascii')


def preview_url(image: Image.Image) -> str:
  """The picture upright, at most PREVIEW_SIDE pixels a side, as a JPEG data URL: in
  colour, or (16 bits, floats, transparency) as the grey predict reads."""
  if image.mode in ('RGB', 'L'):
    image = ImageOps.exif_transpose(image)
  else:
    image = Image.fromarray((predict.to_grey(image) * 255).round().astype(np.uint8))
  image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=85)
  return 'data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def config_name(config) -> str:
  """Which file in configs/ the run's config is, and what it changed, e.g.
  'fast (seed=3)'; the closest file where it matches none."""
  folder = os.path.dirname(configs.__file__)
  ignore = {*config_lib.DATA_KEYS, 'compilation_cache_dir'}
  saved = {k: v for k, v in config.to_dict().items() if k not in ignore}
  best = None
  for file in sorted(os.listdir(folder)):
    if not file.endswith('.py') or file.startswith('_'):
      continue
    name = file[:-3]
    try:
      reference = importlib.import_module(f'configs.{name}').get_config().to_dict()
    except Exception:  # pylint: disable=broad-except
      continue
    diff = {k: v for k, v in saved.items()
            if k in reference and _plain(reference[k]) != _plain(v)}
    if best is None or len(diff) < len(best[1]):
      best = name, diff
  if best is None:
    return 'custom'
  name, diff = best
  return name + (f' ({", ".join(f"{k}={v}" for k, v in sorted(diff.items()))})' if diff else '')


def _plain(value):
  return list(value) if isinstance(value, tuple) else value


SAMPLE_NUMBERS = ('2026', '314')


def samples_of(config) -> list[dict]:
  """Pictures to click on the page: the first test image of each class and, for
  MNIST, numbers made of test digits side by side; each {'label', 'image' (base64
  PNG, dark on white)}. None where the test split is not already decoded here
  (the page then offers none): a server does not prepare datasets."""
  if not input_pipeline.is_cached(config.dataset, config.data_dir):
    logging.info('No sample digits on the page: %s is not prepared in %s.', config.dataset,
                 config.data_dir)
    return []
  test = input_pipeline.load(config.dataset, config.data_dir, splits=('test',))['test']
  first = {c: test.images[int(np.argmax(test.labels == c)), ..., 0] for c in range(10)}
  out = [{'label': name, 'image': png_base64(255 - first[c])}
         for c, name in enumerate(input_pipeline.CLASS_NAMES[config.dataset])]
  if config.dataset == 'mnist':
    for number in SAMPLE_NUMBERS:
      ink = input_pipeline.side_by_side([first[int(d)] for d in number], [4] * (len(number) - 1),
                                        margin=(0, 4))
      out.append({'label': number, 'image': png_base64(255 - ink)})
  return out


def model_info(workdir: str, predictor: predict.Predictor) -> dict:
  config = predictor.config
  metrics = workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  at_step = [m for m in metrics if m.get('step') == predictor.step]
  last = at_step[-1] if at_step else {}
  return {'config': config_name(config), 'dataset': config.dataset,
          'class_names': list(input_pipeline.CLASS_NAMES[config.dataset]),
          'step': predictor.step, 'epoch': last.get('epoch'),
          'test_accuracy': last.get('test_accuracy'), 'val_accuracy': last.get('val_accuracy'),
          # Its name only: where it lives on the server is none of a visitor's business.
          'workdir': os.path.basename(os.path.abspath(workdir))}


def create_app(workdir: str, predictor: predict.Predictor | None = None):
  """The Starlette app answering with `workdir`'s model (loaded once, here)."""
  predictor = predictor or predict.Predictor.from_workdir(workdir, batch=1)
  info = model_info(workdir, predictor)
  sample_pictures = samples_of(predictor.config)

  def error(message: str, status: int = 400):
    return JSONResponse({'error': message}, status_code=status)

  def answer(data: bytes, preview: bool) -> dict:
    image = predict.open_bytes(data)
    found, size = predict.read_picture(image, predictor.classify)
    out = predictor.read(found, predictor.classify([digit for digit, _ in found]))
    for digit, (image28, _) in zip(out['digits'], found):
      digit['preprocessed'] = png_base64(image28)
    out['size'] = list(size)  # The boxes' frame of reference.
    if len(found) == 1:
      out['preprocessed'] = out['digits'][0]['preprocessed']
    if preview:  # For a browser that cannot decode the picture (HEIC in Chrome).
      out['preview'] = preview_url(image)
    return out

  async def predict_endpoint(request: Request):
    if not request.headers.get('content-type', '').startswith('multipart/form-data'):
      return error('send the picture as multipart/form-data, in a field named "image"')
    try:
      async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get('image')
        if upload is None or isinstance(upload, str):
          return error('no file in the field "image"')
        data = await upload.read()
        preview = form.get('preview') == '1'
    except _TooLarge:
      raise
    except Exception as e:  # pylint: disable=broad-except  # A malformed multipart body.
      return error(f'could not read the upload: {e}')
    try:
      return JSONResponse(await run_in_threadpool(answer, data, preview))
    except predict.ImageProblem as e:
      return error(str(e), 422 if str(e).startswith(('blank', 'too small')) else 400)

  async def page(request):
    del request
    return FileResponse(os.path.join(WEB_DIR, 'index.html'))

  async def model(request):
    del request
    return JSONResponse(info)

  async def samples(request):
    del request
    return JSONResponse({'samples': sample_pictures})

  async def healthz(request):
    del request
    return JSONResponse({'status': 'ok'})

  async def http_error(request, exc):
    del request
    return JSONResponse({'error': exc.detail}, status_code=exc.status_code,
                        headers=getattr(exc, 'headers', None))

  app = Starlette(exception_handlers={HTTPException: http_error}, routes=[
      Route('/', page), Route('/api/predict', predict_endpoint, methods=['POST']),
      Route('/api/model', model), Route('/api/samples', samples), Route('/healthz', healthz),
      Mount('/static', StaticFiles(directory=WEB_DIR), name='static'),
  ], middleware=[Middleware(SecurityHeaders),
                 Middleware(LimitUploads, max_bytes=MAX_UPLOAD_BYTES)])
  app.state.info = info
  return app


def check_port_free(host: str, port: int) -> None:
  """One clear message where the port is taken (uvicorn would log and exit)."""
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as e:
    raise UserError(f'--host={host}: not an address of this machine ({e}).') from e
  family, _, _, _, address = infos[0]
  with socket.socket(family, socket.SOCK_STREAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      sock.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRNOTAVAIL:
        raise UserError(f'--host={host} is not an address of this machine: use 127.0.0.1 '
                        '(this machine only) or 0.0.0.0 (every network it is on).') from e
      raise UserError(f'Cannot listen on {host}:{port}: {e.strerror or e}. Another program '
                      '(perhaps another server) uses that port: choose another with '
                      '--port.') from e


def serve(workdir: str, host: str, port: int, step: int | None = None) -> None:
  """Loads the model once, then serves until ctrl-C."""
  if not 0 < port < 65536:
    raise UserError(f'--port={port}: choose a port from 1 to 65535.')
  check_port_free(host, port)
  app = create_app(workdir, predict.Predictor.from_workdir(workdir, step, batch=1))
  info = app.state.info
  accuracy = info['test_accuracy']
  shown = 'localhost' if host in ('127.0.0.1', '::1') else host
  logging.info('Serving %s (step %d%s) at http://%s:%d  (ctrl-C stops)', info['config'],
               info['step'], f', test accuracy {100 * accuracy:.2f}%' if accuracy else '',
               shown, port)
  uvicorn.run(app, host=host, port=port, log_level='warning',
              http=head_timeout_protocol(HEAD_TIMEOUT_S))
