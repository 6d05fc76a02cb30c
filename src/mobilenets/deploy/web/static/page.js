// What both demo pages share: the status line and the ways an image comes in (a picked file, a
// dropped file, a camera frame). Every failure is one line in #status, never a console stack.

export const $ = (id) => document.getElementById(id);

/** Show `text` in #status (red when `error`). */
export function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

/** A picked or dropped file as an ImageBitmap decoded as Pillow reads it (no colour conversion);
 * a file that is not an image throws one line naming it. */
export async function bitmapOf(file) {
  if (!file.type.startsWith('image/')) throw new Error(`${file.name} is not an image (${file.type || 'unknown type'})`);
  return createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' })
    .catch(() => { throw new Error(`${file.name} is not an image this browser can read`); });
}

/** Wire #file, #drop and (where the browser has one) the camera (#camera, #snap, #video):
 * `run(source, name)` gets an ImageBitmap or the <video>; `ready()` says whether the model is loaded. */
export function wireInputs(run, ready) {
  const attempt = async (get, name) => {
    if (!ready()) return status('the model is still loading', true);
    try { await run(await get(), name); } catch (err) { status(err.message, true); }
  };
  const fromFile = (file) => attempt(() => bitmapOf(file), file.name);
  $('file').addEventListener('change', (e) => e.target.files[0] && fromFile(e.target.files[0]));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault(); drop.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) fromFile(file); else status('drop a file (an image)', true);
  });
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return;
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
  $('snap').addEventListener('click', () => attempt(() => $('video'), 'camera frame'));
}

/** The page's runtime line: WebAssembly, and whether threads are allowed. */
export const runtimeNote = () => `ONNX Runtime Web (WebAssembly, ${self.crossOriginIsolated
  ? 'threads allowed' : 'one thread: the page is not cross-origin isolated'})`;
