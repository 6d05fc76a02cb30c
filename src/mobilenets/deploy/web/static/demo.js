// The demo page: pick or drop an image (or use the camera where the browser allows it) and see
// the model's top-5 and the time it took. Every failure is one line in #status.
import { load } from './mobilenet.js';

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };
let model = null;

function show(result, source) {
  const canvas = $('preview');
  const w = source.naturalWidth || source.videoWidth || source.width, h = source.naturalHeight || source.videoHeight || source.height;
  const s = Math.min(1, 300 / Math.max(w, h));
  canvas.width = Math.round(w * s); canvas.height = Math.round(h * s);
  canvas.getContext('2d').drawImage(source, 0, 0, canvas.width, canvas.height);
  $('top').replaceChildren(...result.top.map((t) => {
    const li = document.createElement('li');
    li.textContent = `${t.label} ${(100 * t.probability).toFixed(1)}%`;
    const bar = document.createElement('span');
    bar.className = 'bar'; bar.style.width = `${Math.round(120 * t.probability)}px`;
    li.append(bar);
    return li;
  }));
  $('latency').textContent = `preprocessing ${result.preprocessMs.toFixed(1)} ms, model ${result.inferenceMs.toFixed(1)} ms`;
}

async function classifyFile(file) {
  if (!model) return status('the model is still loading', true);
  if (!file.type.startsWith('image/')) return status(`${file.name} is not an image (${file.type || 'unknown type'})`, true);
  try {
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' })
      .catch(() => { throw new Error(`${file.name} is not an image this browser can read`); });
    const result = await model.classify(bitmap);
    show(result, bitmap);
    status(file.name);
  } catch (err) {
    status(err.message, true);
  }
}

$('file').addEventListener('change', (e) => e.target.files[0] && classifyFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) classifyFile(file); else status('drop a file (an image)', true);
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
    try { const video = $('video'); show(await model.classify(video), video); status('camera frame'); } catch (err) { status(err.message, true); }
  });
}

try {
  model = await load();
  const m = model.meta, size = m.preprocessing.input_size[1];
  await model.logits(new Float32Array(3 * size * size));  // warm-up: the first run sets up the kernels
  const alpha = Number.isInteger(m.model.alpha) ? m.model.alpha.toFixed(1) : String(m.model.alpha);
  $('about').textContent = `MobileNet ${alpha}-${size}, ${m.precision}, ` +
    `${(m.classes || []).length || m.model.num_classes} classes; ONNX Runtime Web (WebAssembly, ` +
    `${self.crossOriginIsolated ? 'threads allowed' : 'one thread: the page is not cross-origin isolated'})`;
  window.mobilenetReady = true;
} catch (err) {
  $('about').textContent = '';
  status(`cannot load the model: ${err.message}`, true);
}
