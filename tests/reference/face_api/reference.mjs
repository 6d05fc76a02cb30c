// face-api's SSD-MobileNetV1 face detector run by face-api itself in Node: the reference that
// mobilenets' TF.js importer (mobilenet detect convert) is tested against.
//
//   node reference.mjs OUT.json NAME=IMAGE.ppm ...
//
// Images come as binary PPM (P6) files holding the RGB pixels that Pillow decoded from the photo
// files (tests/reference/face_api/make_reference.py writes them), so that both sides start from the
// same pixels: Node has no JPEG decoder of its own, and another decoder would differ by +-1 levels.
// face-api's Node build without native code (dist/face-api.node-wasm.js, on @tensorflow/tfjs) runs on
// TF.js's pure-JavaScript CPU backend: no native binary. Per image it writes
//   anchors: face-api's forwardInput() for selected anchors: the decoded box (normalised
//     [ymin, xmin, ymax, xmax] of the padded square, before clipping) and the face score (sigmoid of
//     class column 1), for the 200 best-scoring anchors and every 50th anchor;
//   stats: count, sums and maxima over all anchors (all 5118 values enter);
//   detections: locateFaces() at minConfidence 0.5 and 0.1: [x1, y1, x2, y2] in the image's pixels, score.
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';
import faceapi from '@vladmandic/face-api/dist/face-api.node-wasm.js';

const { tf } = faceapi;
const here = path.dirname(fileURLToPath(import.meta.url));
const modelDir = process.env.FACE_API_MODEL || path.join(here, 'node_modules/@vladmandic/face-api/model');

function readPPM(file) {
  const buf = fs.readFileSync(file);
  // header: P6 <ws> width <ws> height <ws> maxval <one ws> data
  const fields = [];
  let i = 0;
  while (fields.length < 4) {
    while (/\s/.test(String.fromCharCode(buf[i]))) i += 1;
    let s = '';
    while (!/\s/.test(String.fromCharCode(buf[i]))) { s += String.fromCharCode(buf[i]); i += 1; }
    fields.push(s);
  }
  i += 1;
  if (fields[0] !== 'P6' || fields[3] !== '255') throw new Error(`${file}: not an 8-bit binary PPM`);
  const [width, height] = [Number(fields[1]), Number(fields[2])];
  return tf.tensor3d(new Int32Array(buf.subarray(i, i + width * height * 3)), [height, width, 3], 'int32');
}

async function loadNet() {
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'ssd_mobilenetv1_model-weights_manifest.json')));
  const specs = [];
  const buffers = [];
  for (const group of manifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightMap = tf.io.decodeWeights(all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), specs);
  faceapi.nets.ssdMobilenetv1.loadFromWeightMap(weightMap);
  return faceapi.nets.ssdMobilenetv1;
}

const r = (v) => Number(v.toPrecision(8));

async function main() {
  const [out, ...images] = process.argv.slice(2);
  if (!out || images.length === 0) throw new Error('usage: node reference.mjs OUT.json NAME=IMAGE.ppm ...');
  await tf.setBackend('cpu');
  await tf.ready();
  const net = await loadNet();
  const result = { face_api: faceapi.version, tfjs: tf.version_core, backend: tf.getBackend(), images: {} };
  for (const arg of images) {
    const [name, file] = arg.split('=');
    const image = readPPM(file);
    const netInput = await faceapi.toNetInput(image);
    const { boxes, scores } = net.forwardInput(netInput);
    const b = boxes[0].arraySync();
    const s = Array.from(scores[0].dataSync());
    const order = s.map((v, i) => i).sort((p, q) => s[q] - s[p]);
    const chosen = [...new Set([...order.slice(0, 200), ...s.map((v, i) => i).filter((i) => i % 50 === 0)])].sort((p, q) => p - q);
    const anchors = chosen.map((i) => ({ index: i, box: b[i].map(r), score: r(s[i]) }));
    const stats = {
      count: s.length,
      score_sum: s.reduce((a, v) => a + v, 0),
      score_max: Math.max(...s),
      box_sum: b.reduce((a, v) => a + v[0] + v[1] + v[2] + v[3], 0),
      box_abs_max: Math.max(...b.map((v) => Math.max(...v.map(Math.abs)))),
    };
    const detections = {};
    for (const minConfidence of [0.5, 0.1]) {
      const found = await net.locateFaces(image, { minConfidence, maxResults: 100 });
      detections[String(minConfidence)] = found.map((d) => ({
        box: [d.box.x, d.box.y, d.box.x + d.box.width, d.box.y + d.box.height].map(r), score: r(d.score),
      }));
    }
    result.images[name] = { width: image.shape[1], height: image.shape[0], stats, anchors, detections };
    tf.dispose([image, ...boxes, ...scores]);
    process.stderr.write(`${name}: ${detections['0.5'].length} faces at 0.5, ${detections['0.1'].length} at 0.1\n`);
  }
  fs.writeFileSync(out, `${JSON.stringify(result)}\n`);
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
