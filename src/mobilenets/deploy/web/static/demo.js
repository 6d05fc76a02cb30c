// The demo page: pick or drop an image (or use the camera where the browser allows it) and see
// the model's top-5 and the time it took. Every failure is one line in #status (page.js).
import { load } from './mobilenet.js';
import { $, runtimeNote, status, wireInputs } from './page.js';

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

wireInputs(async (source, name) => { show(await model.classify(source), source); status(name); }, () => model !== null);

try {
  const loaded = await load();
  const m = loaded.meta, size = m.preprocessing.input_size[1];
  await loaded.logits(new Float32Array(3 * size * size));  // warm-up: the first run sets up the kernels
  const alpha = Number.isInteger(m.model.alpha) ? m.model.alpha.toFixed(1) : String(m.model.alpha);
  $('about').textContent = `MobileNet ${alpha}-${size}, ${m.precision}, ` +
    `${(m.classes || []).length || m.model.num_classes} classes; ${runtimeNote()}`;
  model = loaded;
  window.mobilenetReady = true;
} catch (err) {
  $('about').textContent = '';
  status(`cannot load the model: ${err.message}`, true);
}
