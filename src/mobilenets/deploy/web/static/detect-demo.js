// The detector's demo page: pick or drop an image (or use the camera where the browser allows it)
// and see the boxes drawn on it, their labels and scores, and the time it took. Every failure is
// one line in #status.
import { load } from './detector.js';

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };
const COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324'];
let model = null, last = null;

function draw() {
  if (!last) return;
  const { result, source } = last, minScore = Number($('score').value);
  const canvas = $('preview'), w = result.width, h = result.height;
  const s = Math.min(1, 480 / Math.max(w, h));
  canvas.width = Math.round(w * s); canvas.height = Math.round(h * s);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  const shown = result.detections.filter((d) => d.score >= minScore);
  ctx.lineWidth = 2; ctx.font = '13px system-ui, sans-serif'; ctx.textBaseline = 'top';
  for (const d of shown) {
    const [x1, y1, x2, y2] = d.box.map((v) => v * s), color = COLORS[(d.index - 1) % COLORS.length];
    const text = `${d.label} ${(100 * d.score).toFixed(0)}%`;
    ctx.strokeStyle = color; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const tw = ctx.measureText(text).width + 6, ty = y1 >= 16 ? y1 - 16 : y1;
    ctx.fillStyle = color; ctx.fillRect(x1, ty, tw, 16);
    ctx.fillStyle = '#fff'; ctx.fillText(text, x1 + 3, ty + 1);
  }
  $('found').replaceChildren(...shown.slice(0, 20).map((d) => {
    const li = document.createElement('li');
    li.textContent = `${d.label} ${(100 * d.score).toFixed(1)}% at [${d.box.map((v) => v.toFixed(0)).join(', ')}]`;
    return li;
  }));
  $('latency').textContent = `${shown.length} of ${result.detections.length} boxes shown; preprocessing ` +
    `${result.preprocessMs.toFixed(1)} ms, model ${result.inferenceMs.toFixed(1)} ms`;
}

async function detectIn(source, name) {
  last = { result: await model.detectWithTiming(source), source };
  draw();
  status(name);
}

async function detectFile(file) {
  if (!model) return status('the model is still loading', true);
  if (!file.type.startsWith('image/')) return status(`${file.name} is not an image (${file.type || 'unknown type'})`, true);
  try {
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' })
      .catch(() => { throw new Error(`${file.name} is not an image this browser can read`); });
    await detectIn(bitmap, file.name);
  } catch (err) {
    status(err.message, true);
  }
}

$('score').addEventListener('input', () => { $('score-value').textContent = Number($('score').value).toFixed(2); draw(); });
$('file').addEventListener('change', (e) => e.target.files[0] && detectFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) detectFile(file); else status('drop a file (an image)', true);
});

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  $('camera').hidden = false;
  $('camera').addEventListener('click', async () => {
    try {
      const video = $('video');
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
      video.style.display = 'block'; $('snap').hidden = false;
    } catch (err) {
      status(`no camera: ${err.message}`, true);
    }
  });
  $('snap').addEventListener('click', async () => {
    try { await detectIn($('video'), 'camera frame'); } catch (err) { status(err.message, true); }
  });
}

try {
  model = await load();
  const d = model.detector, r = d.resolution;
  await model.run(new Float32Array(3 * r * r));  // warm-up: the first run sets up the kernels
  $('about').textContent = `${(d.detector || 'ssd').toUpperCase()} ${d.backbone?.alpha ?? ''}-${r}, ${model.meta.int8 ? 'int8' : 'float32'}, ` +
    `${model.classes.length} ${model.classes.length === 1 ? "class" : "classes"} (${model.classes.slice(0, 5).join(', ')}${model.classes.length > 5 ? ', …' : ''}); ` +
    `ONNX Runtime Web (WebAssembly, ${self.crossOriginIsolated ? 'threads allowed' : 'one thread: the page is not cross-origin isolated'})`;
  window.mobilenetReady = true;
} catch (err) {
  $('about').textContent = '';
  status(`cannot load the model: ${err.message}`, true);
}
