// An exported MobileNet in the browser: ONNX Runtime Web (WebAssembly) runs model.onnx, and this
// module feeds it exactly what the Python side feeds the eager model.
//
// The preprocessing is the one the export recorded in model.onnx.json ("preprocessing"): resize
// the shorter side to `resize` px, centre-crop `input_size`, scale to [0, 1], subtract `mean`,
// divide by `std`, RGB, NCHW float32. The resize is done here in JavaScript, the way Pillow does
// it (torchvision's Resize on a PIL image calls Pillow): a separable convolution whose filter is
// widened by the downscale factor (antialiasing), 22-bit fixed-point weights, a horizontal pass
// rounded to 8 bits, then a vertical one. The canvas's own drawImage scaling is another filter
// (Skia's) and gives other pixels, so it is not used. Written by hand because no npm package
// reproduces Pillow's resampling bit for bit.
//
//   import { load } from './mobilenet.js';
//   const model = await load();                 // reads model.onnx.json and model.onnx beside this file
//   const result = await model.classify(file);  // a File/Blob, ImageBitmap, <img>, <video>, <canvas> or ImageData
//   result.top  // [{index, label, probability}, ...] (5 by default); result.logits: Float32Array

import * as ort from './ort.wasm.min.mjs';

const HERE = new URL('./', import.meta.url);
const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point weights (Resample.c)

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

// Pillow's filters and their support (Resample.c); 0.54f and 0.46f are float constants there.
const FILTERS = {
  bilinear: [1, (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; }],
  bicubic: [2, (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  }],
  box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1 : 0)],
  hamming: [1, (x) => {
    x = Math.abs(x);
    if (x === 0) return 1;
    if (x >= 1) return 0;
    x *= Math.PI;
    return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
  }],
  lanczos: [3, (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)],
};

// For each output pixel: the first input pixel, the count, and the fixed-point weights.
function coefficients(inSize, outSize, filterName) {
  const [support0, filter] = FILTERS[filterName];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const ss = 1 / filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const w = new Float64Array(Math.max(xmax, 0));
    let ww = 0;
    for (let x = 0; x < xmax; x++) { w[x] = filter((x + xmin - center + 0.5) * ss); ww += w[x]; }
    const k = new Int32Array(w.length);
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    out.push([xmin, k]);
  }
  return out;
}

function clip8(ss) {
  const v = Math.floor(ss / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One pass of Pillow's resampling along one axis of an RGB image (3 bytes a pixel).
function pass(src, width, height, outLen, horizontal, filterName) {
  const inLen = horizontal ? width : height;
  const coeffs = coefficients(inLen, outLen, filterName);
  const ow = horizontal ? outLen : width, oh = horizontal ? height : outLen;
  const dst = new Uint8ClampedArray(ow * oh * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [start, k] = coeffs[horizontal ? x : y];
      let s0 = half, s1 = half, s2 = half;
      for (let i = 0; i < k.length; i++) {
        const p = horizontal ? (y * width + start + i) * 3 : ((start + i) * width + x) * 3;
        s0 += src[p] * k[i]; s1 += src[p + 1] * k[i]; s2 += src[p + 2] * k[i];
      }
      const o = (y * ow + x) * 3;
      dst[o] = clip8(s0); dst[o + 1] = clip8(s1); dst[o + 2] = clip8(s2);
    }
  }
  return dst;
}

// NEAREST: the input pixel under each output pixel's centre (not checked against Pillow bit for bit).
function nearest(src, width, height, ow, oh) {
  const dst = new Uint8ClampedArray(ow * oh * 3);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(height - 1, Math.floor((y + 0.5) * height / oh));
    for (let x = 0; x < ow; x++) {
      const sx = Math.min(width - 1, Math.floor((x + 0.5) * width / ow));
      for (let c = 0; c < 3; c++) dst[(y * ow + x) * 3 + c] = src[(sy * width + sx) * 3 + c];
    }
  }
  return dst;
}

/** Resize an RGB image (Uint8 array, 3 bytes a pixel) to ow x oh as Pillow's Image.resize does. */
export function resizeRGB(rgb, width, height, ow, oh, interpolation = 'bilinear') {
  if (interpolation === 'nearest') return nearest(rgb, width, height, ow, oh);
  if (!(interpolation in FILTERS)) throw new Error(`unknown interpolation ${interpolation}`);
  let out = rgb, w = width;
  if (ow !== width) { out = pass(out, w, height, ow, true, interpolation); w = ow; }
  if (oh !== height) out = pass(out, w, height, oh, false, interpolation);
  return out;
}

// Python's round(): halves to even (torchvision's centre crop uses it).
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The model's input (Float32Array, NCHW, batch 1) for an RGBA image (ImageData's data), as the
 * Python eval transform makes it: resize the shorter side, centre crop, normalise. `pre`: the
 * export's recorded preprocessing (model.onnx.json); `pre.color` 'BGR' swaps the channels. */
export function preprocess(rgba, width, height, pre) {
  const size = pre.input_size[1];
  const short = Math.min(width, height), long = Math.max(width, height);
  // torchvision: new long side = int(resize * long / short)
  const newLong = Math.trunc(pre.resize * long / short);
  const [rw, rh] = width <= height ? [pre.resize, newLong] : [newLong, pre.resize];
  let rgb = new Uint8ClampedArray(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    rgb[i * 3] = rgba[j]; rgb[i * 3 + 1] = rgba[j + 1]; rgb[i * 3 + 2] = rgba[j + 2];
  }
  if (rw !== width || rh !== height) rgb = resizeRGB(rgb, width, height, rw, rh, pre.interpolation);
  if (rw < size || rh < size) throw new Error(`image resized to ${rw}x${rh} is smaller than the ${size} px crop`);
  const top = roundHalfEven((rh - size) / 2), left = roundHalfEven((rw - size) / 2);
  const order = (pre.color || 'RGB') === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    // float32 as torch computes it: (pixel - float32(255 mean)) * float32(1 / (255 std))
    const shift = Math.fround(255 * pre.mean[c]), scale = Math.fround(1 / (255 * pre.std[c]));
    const src = order[c];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const p = rgb[((top + y) * rw + left + x) * 3 + src];
        out[(c * size + y) * size + x] = Math.fround(Math.fround(p - shift) * scale);
      }
    }
  }
  return out;
}

/** RGBA pixels of an image at its own size: {data, width, height}. A Blob/File is decoded with
 * no colour-space conversion (as Pillow reads it); a file that is not an image throws. */
export async function pixelsOf(image) {
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return image;
  let source = image;
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    try {
      source = await createImageBitmap(image, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    } catch {
      throw new Error(`${image.name || 'the file'} is not an image this browser can read`);
    }
  }
  const width = source.naturalWidth || source.videoWidth || source.width;
  const height = source.naturalHeight || source.videoHeight || source.height;
  if (!width || !height) throw new Error('the image has no pixels (not loaded yet?)');
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  if (source !== image && source.close) source.close();
  return ctx.getImageData(0, 0, width, height);
}

function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

export class MobileNet {
  constructor(session, meta, preprocessing) {
    this.session = session;
    this.meta = meta;
    this.preprocessing = preprocessing;
    this.classes = meta.classes || null;
    this.inputName = preprocessing.input_name || session.inputNames[0];
    this.outputName = preprocessing.output_name || session.outputNames[0];
  }

  /** Logits (Float32Array) of one preprocessed NCHW input. */
  async logits(input) {
    const size = this.preprocessing.input_size[1];
    const feeds = { [this.inputName]: new ort.Tensor('float32', input, [1, 3, size, size]) };
    const out = await this.session.run(feeds);
    return out[this.outputName].data;
  }

  /** The top-k classes of an image: {top: [{index, label, probability}], logits, preprocessMs, inferenceMs}. */
  async classify(image, { topK = 5 } = {}) {
    const t0 = performance.now();
    const px = await pixelsOf(image);
    const input = preprocess(px.data, px.width, px.height, this.preprocessing);
    const t1 = performance.now();
    const logits = await this.logits(input);
    const t2 = performance.now();
    const probs = softmax(logits);
    const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, topK);
    const top = order.map((i) => ({ index: i, label: this.classes ? this.classes[i] : String(i), probability: probs[i] }));
    return { top, logits, preprocessMs: t1 - t0, inferenceMs: t2 - t1 };
  }
}

/** Load the exported model beside this module. Options: `threads` (WASM threads; more than 1
 * needs a cross-origin isolated page: COOP/COEP headers), `preprocessing` (keys that replace the
 * recorded ones: for experiments), `base` (the folder's URL). */
export async function load({ threads, preprocessing = {}, base = HERE } = {}) {
  const meta = await (await fetch(new URL('model.onnx.json', base))).json();
  ort.env.wasm.wasmPaths = HERE.href;
  ort.env.wasm.numThreads = threads || (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  const session = await ort.InferenceSession.create(new URL('model.onnx', base).href, {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all',
  });
  return new MobileNet(session, meta, { ...meta.preprocessing, ...preprocessing });
}

export { ort };
