// An exported SSD/SSDLite detector in the browser: ONNX Runtime Web (WebAssembly) runs model.onnx
// (box decoding and NMS inside: `mobilenet detect export`), and this module feeds it the image as
// the Python side does (mobilenets.tasks.detect.inputs.ssd_input), then maps the boxes back to
// the image's pixels.
//
// The input handling is the one the detector records (model.onnx.json, "detector"):
// * input_pad "bottom_right": the image zero-padded (black) at the bottom or right to a square
//   first (face-api's padToSquare);
// * input_resize "antialias": pixels scaled to [0, 1] (float32), then torch's antialiased bilinear
//   resize to R x R (what torchvision's Resize(antialias=True) runs on a float tensor: a separable
//   triangle filter widened by the downscale factor, float32 weights and sums, width then height);
//   "tf_legacy": TensorFlow's legacy bilinear resize of the 0..255 pixels (output pixel i reads
//   input i * in / out, no antialiasing), then / 255.
// Written by hand: no npm package reproduces torch's or TF's resize numerics.
//
//   import { load } from './detector.js';
//   const detector = await load();
//   const found = await detector.detect(file);  // [{box: [x1, y1, x2, y2] image pixels, score, label}]

import { ort, pixelsOf } from './mobilenet.js';

const HERE = new URL('./', import.meta.url);
const f32 = Math.fround;

function triangle(x) {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

// torch's antialiased weights along one axis (UpSampleKernel.cpp's _compute_weights_aa), float32.
function aaWeights(inSize, outSize) {
  const scale = f32(inSize / outSize);
  const support = scale >= 1 ? f32(scale) : 1;
  const invscale = scale >= 1 ? f32(1 / scale) : 1;
  const out = [];
  for (let i = 0; i < outSize; i++) {
    const center = f32(scale * (i + 0.5));
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = new Float32Array(Math.max(xsize, 0));
    let total = 0;
    for (let j = 0; j < xsize; j++) { w[j] = triangle(f32((j + xmin - center + 0.5) * invscale)); total = f32(total + w[j]); }
    if (total !== 0) for (let j = 0; j < xsize; j++) w[j] = f32(w[j] / total);
    out.push([xmin, w]);
  }
  return out;
}

// One antialiased pass over planar float32 channels [3][h][w] along width (horizontal) or height.
function aaPass(src, width, height, outLen, horizontal) {
  const weights = aaWeights(horizontal ? width : height, outLen);
  const ow = horizontal ? outLen : width, oh = horizontal ? height : outLen;
  const dst = new Float32Array(3 * ow * oh);
  for (let c = 0; c < 3; c++) {
    const base = c * width * height;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const [start, w] = weights[horizontal ? x : y];
        let t = 0;
        for (let j = 0; j < w.length; j++) {
          const v = horizontal ? src[base + y * width + start + j] : src[base + (start + j) * width + x];
          t = j === 0 ? f32(v * w[0]) : f32(t + f32(v * w[j]));
        }
        dst[c * ow * oh + y * ow + x] = t;
      }
    }
  }
  return dst;
}

// TF's legacy bilinear along both axes of planar 0..255 channels, in float64, then float32.
function tfLegacy(src, width, height, r) {
  const axis = (n) => Array.from({ length: r }, (_, i) => {
    const s = i * (n / r), lo = Math.min(Math.floor(s), n - 1);
    return [lo, Math.min(lo + 1, n - 1), s - lo];
  });
  const ys = axis(height), xs = axis(width);
  const dst = new Float32Array(3 * r * r);
  for (let c = 0; c < 3; c++) {
    const b = c * width * height;
    for (let y = 0; y < r; y++) {
      const [y0, y1, dy] = ys[y];
      for (let x = 0; x < r; x++) {
        const [x0, x1, dx] = xs[x];
        const tl = src[b + y0 * width + x0], tr = src[b + y0 * width + x1];
        const bl = src[b + y1 * width + x0], br = src[b + y1 * width + x1];
        const top = tl + (tr - tl) * dx, bottom = bl + (br - bl) * dx;
        dst[c * r * r + y * r + x] = top + (bottom - top) * dy;
      }
    }
  }
  return dst;
}

/** The detector's input (Float32Array [1, 3, R, R], RGB in [0, 1]) for an RGBA image, and the
 * (x, y) factors that take a box in input pixels back to the image's pixels (ssd_input's). */
export function preprocess(rgba, width, height, det) {
  const r = det.resolution;
  let w = width, h = height, sx = width / r, sy = height / r;
  if (det.input_pad === 'bottom_right') {
    const side = Math.max(w, h);
    if (det.pad_rounded_scale) { sx = w / Math.round(w * r / side); sy = h / Math.round(h * r / side); } else { sx = sy = side / r; }
    w = h = side;
  } else if (det.input_pad && det.input_pad !== 'none') {
    throw new Error(`input_pad ${det.input_pad} is not supported in the browser`);
  }
  const order = (det.color || 'RGB') === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  let x = new Float32Array(3 * w * h);  // planar 0..255, zero where padded
  for (let c = 0; c < 3; c++) {
    for (let yy = 0; yy < height; yy++) {
      for (let xx = 0; xx < width; xx++) x[c * w * h + yy * w + xx] = rgba[(yy * width + xx) * 4 + order[c]];
    }
  }
  const resize = det.input_resize || 'antialias';
  if (resize === 'tf_legacy') {
    if (w !== r || h !== r) x = tfLegacy(x, w, h, r);
    for (let i = 0; i < x.length; i++) x[i] = f32(x[i] / 255);
  } else if (resize === 'antialias') {
    const k = f32(1 / 255);
    for (let i = 0; i < x.length; i++) x[i] = f32(x[i] * k);
    if (w !== r || h !== r) {
      if (w !== r) { x = aaPass(x, w, h, r, true); w = r; }
      if (h !== r) x = aaPass(x, w, h, r, false);
    }
  } else {
    throw new Error(`input_resize ${resize} is not supported in the browser`);
  }
  return { input: x, scale: [sx, sy] };
}

export class Detector {
  constructor(session, meta, detector) {
    this.session = session;
    this.meta = meta;
    this.detector = detector;
    this.classes = meta.classes || [];
  }

  /** Raw outputs of one preprocessed input: {boxes (normalised xyxy, Float32Array [D*4]), scores, labels}. */
  async run(input) {
    const r = this.detector.resolution;
    const out = await this.session.run({ input: new ort.Tensor('float32', input, [1, 3, r, r]) });
    return { boxes: out.boxes.data, scores: out.scores.data, labels: Array.from(out.labels.data, Number) };
  }

  /** Detections of an image: {detections: [{box: [x1, y1, x2, y2] in the image's pixels, score,
   * label, index}], preprocessMs, inferenceMs}; `minScore` drops the lower scores (default: none). */
  async detectWithTiming(image, { minScore = 0 } = {}) {
    const t0 = performance.now();
    const px = await pixelsOf(image);
    const { input, scale } = preprocess(px.data, px.width, px.height, this.detector);
    const t1 = performance.now();
    const { boxes, scores, labels } = await this.run(input);
    const t2 = performance.now();
    const r = this.detector.resolution, f = [scale[0] * r, scale[1] * r, scale[0] * r, scale[1] * r];
    const detections = [];
    for (let i = 0; i < scores.length; i++) {
      if (scores[i] < minScore) continue;
      detections.push({ box: [0, 1, 2, 3].map((k) => boxes[i * 4 + k] * f[k]), score: scores[i],
                        label: this.classes[labels[i] - 1] ?? String(labels[i]), index: labels[i] });
    }
    return { detections, width: px.width, height: px.height, preprocessMs: t1 - t0, inferenceMs: t2 - t1 };
  }

  /** [{box: [x1, y1, x2, y2] in the image's pixels, score, label}], highest score first. */
  async detect(image, options) {
    return (await this.detectWithTiming(image, options)).detections;
  }
}

/** Load the exported detector beside this module. Options: `threads` (WASM threads; more than 1
 * needs a cross-origin isolated page), `detector` (keys that replace the recorded input handling:
 * for experiments), `base` (the folder's URL). */
export async function load({ threads, detector = {}, base = HERE } = {}) {
  const meta = await (await fetch(new URL('model.onnx.json', base))).json();
  if (!meta.detector) throw new Error('model.onnx.json records no detector: this folder is not a detector export');
  ort.env.wasm.wasmPaths = HERE.href;
  ort.env.wasm.numThreads = threads || (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  const session = await ort.InferenceSession.create(new URL('model.onnx', base).href, {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all',
  });
  return new Detector(session, meta, { ...meta.detector, ...detector });
}
