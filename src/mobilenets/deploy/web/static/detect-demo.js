// The detector's demo page: pick or drop an image (or use the camera where the browser allows it)
// and see the boxes drawn on it, their labels and scores, and the time it took. Every failure is
// one line in #status (page.js).
import { load } from './detector.js';
import { $, runtimeNote, status, wireInputs } from './page.js';

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

$('score').addEventListener('input', () => { $('score-value').textContent = Number($('score').value).toFixed(2); draw(); });
wireInputs(async (source, name) => {
  last = { result: await model.detectWithTiming(source), source };
  draw();
  status(name);
}, () => model !== null);

try {
  const loaded = await load();
  const d = loaded.detector, r = d.resolution, classes = loaded.classes;
  await loaded.run(new Float32Array(3 * r * r));  // warm-up: the first run sets up the kernels
  $('about').textContent = `${(d.detector || 'ssd').toUpperCase()} ${d.backbone?.alpha ?? ''}-${r}, ${loaded.meta.int8 ? 'int8' : 'float32'}, ` +
    `${classes.length} ${classes.length === 1 ? 'class' : 'classes'} (${classes.slice(0, 5).join(', ')}${classes.length > 5 ? ', …' : ''}); ` +
    runtimeNote();
  model = loaded;
  window.mobilenetReady = true;
} catch (err) {
  $('about').textContent = '';
  status(`cannot load the model: ${err.message}`, true);
}
