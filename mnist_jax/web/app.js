// The draw-a-digit page: strokes on a canvas, sent as a PNG to /api/predict a
// moment after the last stroke; the answer shown as a digit (or as doubt, with the
// runner-up), ten bars and the 28x28 image the model saw. Uploads (file, drop,
// camera) take the same route, and are shown on the canvas.
'use strict';

const canvas = document.getElementById('canvas');
const context = canvas.getContext('2d');
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
  document.getElementById('prediction').textContent = '?';
  document.getElementById('confidence').textContent = '';
  document.querySelector('.digit').classList.remove('doubt');
  document.getElementById('seen').hidden = true;
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

function sendFile(file) {
  if (!file) return;
  strokes.length = 0;
  redraw();
  showPicture(file);
  send(file, file.name, file.name);
}

// The uploaded picture on the canvas, whole and centred, as the person sees it.
async function showPicture(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {imageOrientation: 'from-image'});
  } catch (error) {
    return;  // Not a picture the browser decodes: the server's answer says why.
  }
  const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  context.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  bitmap.close();
}

async function send(blob, filename, what) {
  const request = ++latest;
  const body = new FormData();
  body.append('image', blob, filename);
  showStatus(`Reading ${what}…`);
  let answer;
  try {
    const response = await fetch('/api/predict', {method: 'POST', body});
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (error) {
    if (request === latest) {
      showStatus(`Could not read ${what}: ${error.message}`, true);
      drawBars(null);
      document.getElementById('prediction').textContent = '?';
      document.getElementById('confidence').textContent = '';
      document.querySelector('.digit').classList.remove('doubt');
      document.getElementById('seen').hidden = true;
    }
    return;
  }
  if (request !== latest) return;
  const name = classNames[answer.prediction];
  const second = runnerUp(answer.probabilities, answer.prediction);
  const other = `${classNames[second]} (${percent(answer.probabilities[second])})`;
  const doubt = answer.confidence < DOUBT;
  document.getElementById('prediction').textContent = doubt ? `${name}?` : name;
  document.querySelector('.digit').classList.toggle('doubt', doubt);
  document.getElementById('confidence').textContent = `${percent(answer.confidence)} sure`;
  if (doubt) {
    showStatus(`The model is unsure: it reads ${what} as maybe ${name}, or ${other}.`);
  } else if (answer.confidence < SURE) {
    showStatus(`The model reads ${what} as ${name}; next likely: ${other}.`);
  } else {
    showStatus(`The model reads ${what} as ${name}.`);
  }
  drawBars(answer.probabilities, answer.prediction, answer.confidence < SURE ? second : -1);
  const seen = document.getElementById('seen');
  seen.src = `data:image/png;base64,${answer.preprocessed}`;
  seen.hidden = false;
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
