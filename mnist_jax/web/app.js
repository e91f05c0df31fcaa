// The draw-a-digit page: strokes on a canvas, sent as a PNG to /api/predict a
// moment after the last stroke; the answer shown as a digit (or as doubt, with the
// runner-up), ten bars and the 28x28 image the model saw. Several digits are shown
// as the number read, a box over each, and a button per digit for its bars.
// Uploads (file, drop, camera, a sample) take the same route, and are shown on the
// canvas.
'use strict';

const canvas = document.getElementById('canvas');
const context = canvas.getContext('2d');
const overlay = document.getElementById('boxes').getContext('2d');
let picture = null;  // Where an uploaded picture lies on the canvas: {x, y, scale}.
const strokes = [];  // Each a list of [x, y] in canvas pixels.
let current = null;
let timer = null;
let latest = 0;  // Only the newest request's answer is shown.
let classNames = [...Array(10).keys()].map(String);
const DEBOUNCE_MS = 250;
// Below SURE the runner-up is named; below DOUBT the answer is a guess, not a verdict.
const SURE = 0.9;
const DOUBT = 0.6;
// MNIST's strokes are ~2 px of a 20 px digit; a digit drawn over most of the
// canvas then wants a pen ~1/14 of its width.
const PEN = canvas.width / 14;

function redraw() {
  picture = null;
  drawBoxes([]);
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = '#000';
  context.fillStyle = '#000';
  context.lineWidth = PEN;
  context.lineCap = 'round';
  context.lineJoin = 'round';
  for (const stroke of strokes) {
    if (stroke.length === 1) {  // A dot.
      context.beginPath();
      context.arc(stroke[0][0], stroke[0][1], PEN / 2, 0, 2 * Math.PI);
      context.fill();
      continue;
    }
    context.beginPath();
    context.moveTo(...stroke[0]);
    for (const point of stroke.slice(1)) context.lineTo(...point);
    context.stroke();
  }
}

function position(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
          (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener('pointerdown', (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  current = [position(event)];
  strokes.push(current);
  clearTimeout(timer);
  redraw();
});
canvas.addEventListener('pointermove', (event) => {
  if (!current) return;
  for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) {
    current.push(position(e));
  }
  redraw();
});
for (const type of ['pointerup', 'pointercancel']) {
  canvas.addEventListener(type, () => {
    if (!current) return;
    current = null;
    schedule();
  });
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(sendDrawing, DEBOUNCE_MS);
}

function undo() {
  strokes.pop();
  redraw();
  if (strokes.length) schedule(); else reset();
}

function clear() {
  strokes.length = 0;
  redraw();
  reset();
}

function reset() {
  clearTimeout(timer);
  latest += 1;  // Answers still on their way are for a drawing that is gone.
  showStatus('Draw a digit to see what the model reads.');
  clearAnswer();
}

function clearAnswer() {
  document.getElementById('prediction').textContent = '?';
  document.getElementById('confidence').textContent = '';
  document.querySelector('.digit').classList.remove('doubt');
  document.getElementById('seen').hidden = true;
  document.getElementById('digits').hidden = true;
  drawBoxes([]);
  drawBars(null);
}

document.getElementById('undo').addEventListener('click', undo);
document.getElementById('clear').addEventListener('click', clear);
document.addEventListener('keydown', (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === 'z') { event.preventDefault(); undo(); }
  if (event.key === 'Escape') clear();
});

function sendDrawing() {
  if (!strokes.length) return;
  canvas.toBlob((blob) => send(blob, 'drawing.png', 'your drawing'), 'image/png');
}

async function sendFile(file) {
  if (!file) return;
  strokes.length = 0;
  redraw();
  picture = true;  // The answer's boxes go over the picture as drawPicture places it.
  // One the browser cannot decode (HEIC in Chrome) is shown as the server read it.
  const shown = await showPicture(file);
  send(file, file.name, file.name, !shown);
}

// The uploaded picture on the canvas, upright as the person sees it; false if the
// browser cannot decode it.
async function showPicture(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {imageOrientation: 'from-image'});
  } catch (error) {
    return false;
  }
  drawPicture(bitmap);
  bitmap.close();
  return true;
}

// A picture whole and centred on the canvas.
function drawPicture(image) {
  const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
  const [w, h] = [image.width * scale, image.height * scale];
  context.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

// The server's view of a picture the browser could not decode (a JPEG data URL).
function showPreview(url) {
  const image = new Image();
  image.addEventListener('load', () => drawPicture(image));
  image.src = url;
}

// Where a picture of `size` [w, h] lies on the canvas: whole and centred (as
// showPicture draws it), or the canvas itself for a drawing.
function placement(size) {
  if (!size || (size[0] === canvas.width && size[1] === canvas.height && !picture)) {
    return {x: 0, y: 0, scale: 1};
  }
  const scale = Math.min(canvas.width / size[0], canvas.height / size[1]);
  return {x: (canvas.width - size[0] * scale) / 2, y: (canvas.height - size[1] * scale) / 2,
          scale};
}

// A box around each digit read, numbered, in the colour of how sure the model is.
function drawBoxes(digits, size) {
  overlay.clearRect(0, 0, canvas.width, canvas.height);
  if (digits.length < 2) return;
  const at = placement(size);
  overlay.lineWidth = 3;
  overlay.font = 'bold 16px system-ui, sans-serif';
  digits.forEach((digit, i) => {
    const [x0, y0, x1, y1] = digit.box;
    const colour = digit.confidence < DOUBT ? '#d89b00' : '#1a9c3b';
    overlay.strokeStyle = colour;
    overlay.fillStyle = colour;
    overlay.strokeRect(at.x + x0 * at.scale - 2, at.y + y0 * at.scale - 2,
                       (x1 - x0) * at.scale + 4, (y1 - y0) * at.scale + 4);
    overlay.fillText(String(i + 1), at.x + x0 * at.scale, Math.max(14, at.y + y0 * at.scale - 6));
  });
}

async function send(blob, filename, what, preview = false) {
  const request = ++latest;
  const body = new FormData();
  body.append('image', blob, filename);
  if (preview) body.append('preview', '1');
  showStatus(`Reading ${what}…`);
  let answer;
  try {
    const response = await fetch('/api/predict', {method: 'POST', body});
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (error) {
    if (request === latest) {
      showStatus(`Could not read ${what}: ${error.message}`, true);
      clearAnswer();
    }
    return;
  }
  if (request !== latest) return;
  if (answer.preview) showPreview(answer.preview);
  showAnswer(answer, what);
}

// One digit as a verdict (or doubt, with the runner-up); several as the number, a
// button and a box for each, the least sure one's bars shown first.
function showAnswer(answer, what) {
  const digits = answer.digits || [answer];
  const names = digits.map((d) => classNames[d.prediction]);
  const doubt = digits.some((d) => d.confidence < DOUBT);
  const prediction = document.getElementById('prediction');
  prediction.textContent = names.join(digits.length > 1 ? '' : ' ') + (doubt ? '?' : '');
  document.querySelector('.digit').classList.toggle('doubt', doubt);
  const list = document.getElementById('digits');
  list.hidden = digits.length < 2;
  drawBoxes(digits, answer.size);
  if (digits.length === 1) {
    document.getElementById('confidence').textContent = `${percent(digits[0].confidence)} sure`;
    showDigit(digits[0]);
    const name = names[0];
    const other = runnerUpText(digits[0]);
    if (doubt) {
      showStatus(`The model is unsure: it reads ${what} as maybe ${name}, or ${other}.`);
    } else if (digits[0].confidence < SURE) {
      showStatus(`The model reads ${what} as ${name}; next likely: ${other}.`);
    } else {
      showStatus(`The model reads ${what} as ${name}.`);
    }
    return;
  }
  document.getElementById('confidence').textContent = `${digits.length} digits`;
  const buttons = digits.map((digit, i) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = digit.confidence < DOUBT ? 'doubt' : '';
    button.innerHTML = '<span class="read"></span><span class="sure"></span>';
    button.querySelector('.read').textContent = names[i];
    button.querySelector('.sure').textContent = percent(digit.confidence);
    button.setAttribute('aria-label', `digit ${i + 1}: ${names[i]}, ${percent(digit.confidence)} sure`);
    button.addEventListener('click', () => select(i));
    item.append(button);
    return item;
  });
  list.replaceChildren(...buttons);
  const select = (i) => {
    buttons.forEach((b, j) => b.firstChild.setAttribute('aria-pressed', String(i === j)));
    showDigit(digits[i], ` of digit ${i + 1}`);
  };
  let least = 0;
  digits.forEach((d, i) => { if (d.confidence < digits[least].confidence) least = i; });
  select(least);
  const number = names.join('');
  const unsure = `digit ${least + 1} (${names[least]}, ${percent(digits[least].confidence)}; ` +
      `or ${runnerUpText(digits[least])})`;
  if (doubt) {
    showStatus(`The model reads ${what} as ${digits.length} digits, ${number}, but is unsure ` +
               `of ${unsure}.`);
  } else if (digits[least].confidence < SURE) {
    showStatus(`The model reads ${what} as ${digits.length} digits: ${number}; least sure: ` +
               `${unsure}.`);
  } else {
    showStatus(`The model reads ${what} as ${digits.length} digits: ${number}.`);
  }
}

// One digit's bars and the 28x28 image the model saw of it (`which`: its place in a number).
function showDigit(digit, which = '') {
  document.getElementById('seen-caption').textContent = `What the model saw${which}`;
  const second = runnerUp(digit.probabilities, digit.prediction);
  drawBars(digit.probabilities, digit.prediction, digit.confidence < SURE ? second : -1);
  const seen = document.getElementById('seen');
  seen.hidden = !digit.preprocessed;
  if (digit.preprocessed) seen.src = `data:image/png;base64,${digit.preprocessed}`;
}

function runnerUpText(digit) {
  const second = runnerUp(digit.probabilities, digit.prediction);
  return `${classNames[second]} (${percent(digit.probabilities[second])})`;
}

function showStatus(text, isError = false) {
  const status = document.getElementById('status');
  status.textContent = text;
  status.classList.toggle('error', isError);
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

function runnerUp(probabilities, best) {
  let second = best === 0 ? 1 : 0;
  probabilities.forEach((p, i) => { if (i !== best && p > probabilities[second]) second = i; });
  return second;
}

function drawBars(probabilities, best, second = -1) {
  const list = document.getElementById('bars');
  list.replaceChildren(...classNames.map((name, i) => {
    const p = probabilities ? probabilities[i] : 0;
    const item = document.createElement('li');
    item.className = !probabilities ? '' : i === best ? 'best' : i === second ? 'second' : '';
    item.innerHTML = '<span class="label"></span><span class="track"><span class="fill">' +
        '</span></span><span class="value"></span>';
    item.querySelector('.label').textContent = name;
    item.querySelector('.fill').style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector('.value').textContent = probabilities ? `${(100 * p).toFixed(1)}%` : '';
    item.setAttribute('aria-label', `${name}: ${(100 * p).toFixed(1)} percent`);
    return item;
  }));
}

for (const id of ['file', 'camera']) {
  const input = document.getElementById(id);
  input.addEventListener('change', () => { sendFile(input.files[0]); input.value = ''; });
}
const drop = document.getElementById('drop');
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  sendFile(event.dataTransfer.files[0]);
});

// Test images to click: each is sent and shown as an upload.
async function loadSamples() {
  let samples = [];
  try {
    samples = (await (await fetch('/api/samples')).json()).samples;
  } catch (error) {
    return;  // No samples: the section stays hidden.
  }
  const list = document.getElementById('sample-list');
  list.replaceChildren(...samples.map((sample) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.title = `Try this test image of ${sample.label}`;
    const image = document.createElement('img');
    image.src = `data:image/png;base64,${sample.image}`;
    image.alt = `test image of ${sample.label}`;
    button.append(image);
    button.addEventListener('click', () => {
      const bytes = Uint8Array.from(atob(sample.image), (c) => c.charCodeAt(0));
      sendFile(new File([bytes], `the sample ${sample.label}`, {type: 'image/png'}));
      window.scrollTo({top: 0});  // Where the picture and the answer are.
    });
    return button;
  }));
  document.getElementById('samples').hidden = samples.length === 0;
}

async function loadModel() {
  const line = document.getElementById('model');
  try {
    const info = await (await fetch('/api/model')).json();
    classNames = info.class_names;
    const accuracy = info.test_accuracy == null ? '' :
        `, test accuracy ${(100 * info.test_accuracy).toFixed(2)}%`;
    line.textContent = `Model: ${info.config} on ${info.dataset}, step ${info.step}${accuracy}`;
  } catch (error) {
    line.textContent = `Could not ask the server which model answers: ${error.message}`;
  }
  drawBars(null);
}

redraw();
loadModel();
loadSamples();
