// The page: loads ddpm_web.wasm and the model files, and runs a drawing one network step per
// frame, showing x_t and the predicted x0. Everything it computes comes from the module.
"use strict";

const SIDE = 28;
const LEN = SIDE * SIDE;

// What each choice of model loads (files under models/) and the settings it starts with.
const MODELS = {
  "f32": { file: "tiny_unet_mnist.ddpm", guide: "tiny_unet_mnist_guide.ddpm",
           preset: { sampler: 0, steps: 20, eta: 1, clip: true, guided: true, weight: 2.5 } },
  "int8": { file: "tiny_unet_mnist_int8.ddpm", guide: "tiny_unet_mnist_guide_int8.ddpm",
            preset: { sampler: 2, steps: 10, eta: 0, clip: true, guided: true, weight: 2.5 } },
  "cond": { file: "tiny_unet_mnist_cond.ddpm", guide: null,
            preset: { sampler: 0, steps: 20, eta: 1, clip: true, guided: true, weight: 1.3 } },
  "cond-int8": { file: "tiny_unet_mnist_cond_int8.ddpm", guide: null,
                 preset: { sampler: 2, steps: 10, eta: 0, clip: true, guided: true, weight: 1.3 } },
};
const MASKS = ["top", "bottom", "left", "right", "center"];

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let wasm = null;           // the module's exports
const handles = new Map(); // model file → handle
let digits = null;         // the shipped test digits, N×784 u8
let digit = 0;             // which test digit is being completed
const mask = new Uint8Array(LEN); // 1: hidden (drawn by the model)
let running = false;
const computeTimes = []; // ms of computing of every drawing since the page loaded

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  setStatus("error");
  $("progress").textContent = "stopped: see the message above";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text || state;
}

function lastError() {
  const bytes = new Uint8Array(wasm.memory.buffer, wasm.ddpm_error_ptr(), wasm.ddpm_error_len());
  return new TextDecoder().decode(bytes);
}

async function fetchBytes(url, what) {
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw new Error(`could not fetch ${what} ${url}: ${e.message}`);
  }
  if (!resp.ok) {
    throw new Error(`could not fetch ${what} ${url}: the server answered ${resp.status} ${resp.statusText}`);
  }
  return new Uint8Array(await resp.arrayBuffer());
}

async function loadModule() {
  const bytes = await fetchBytes("pkg/ddpm_web.wasm", "the WebAssembly module");
  const { instance } = await WebAssembly.instantiate(bytes, {});
  wasm = instance.exports;
  $("kernels").textContent = wasm.ddpm_simd128() ? "SIMD128 available" : "portable only (built without SIMD128)";
}

// The handle of model file `name` (under models/), loading it the first time.
async function model(name) {
  if (handles.has(name)) return handles.get(name);
  const bytes = await fetchBytes(`models/${name}`, "the model file");
  const ptr = wasm.ddpm_alloc(bytes.length);
  new Uint8Array(wasm.memory.buffer, ptr, bytes.length).set(bytes);
  const h = wasm.ddpm_load(ptr, bytes.length);
  if (h < 0) throw new Error(`models/${name}: ${lastError()}`);
  handles.set(name, h);
  return h;
}

async function loadDigits() {
  const bytes = await fetchBytes("models/mnist_test_digits.idx", "the test digits");
  const view = new DataView(bytes.buffer);
  if (bytes.length < 16 || view.getUint32(0) !== 0x803 || view.getUint32(8) !== SIDE || view.getUint32(12) !== SIDE) {
    throw new Error("models/mnist_test_digits.idx is not an IDX file of 28×28 images");
  }
  const n = view.getUint32(4);
  digits = [];
  for (let i = 0; i < n; i++) digits.push(bytes.slice(16 + i * LEN, 16 + (i + 1) * LEN));
  const box = $("digits");
  digits.forEach((d, i) => {
    const c = document.createElement("canvas");
    c.width = SIDE; c.height = SIDE;
    c.className = "thumb";
    c.title = `test digit ${i}`;
    paintU8(c, d);
    c.addEventListener("click", () => { digit = i; paintMask(); selectThumb(); });
    box.appendChild(c);
  });
  selectThumb();
}

function selectThumb() {
  [...$("digits").children].forEach((c, i) => c.classList.toggle("chosen", i === digit));
}

function paintU8(canvas, pixels, hidden) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < LEN; i++) {
    const v = pixels[i];
    const h = hidden && hidden[i];
    img.data[4 * i] = h ? 90 + v / 4 : v;
    img.data[4 * i + 1] = h ? 40 : v;
    img.data[4 * i + 2] = h ? 110 + v / 4 : v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function paintF32(canvas, ptr) {
  const values = new Float32Array(wasm.memory.buffer, ptr, LEN);
  const px = new Uint8Array(LEN);
  for (let i = 0; i < LEN; i++) {
    px[i] = Math.max(0, Math.min(255, Math.round((values[i] + 1) * 127.5)));
  }
  paintU8(canvas, px);
  return px;
}

function paintMask() {
  if (digits) paintU8($("maskcanvas"), digits[digit], mask);
}

function setMask(shape) {
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const h = SIDE / 2, q = SIDE / 4;
      const hide = {
        top: y < h, bottom: y >= h, left: x < h, right: x >= h,
        center: y >= q && y < q + h && x >= q && x < q + h, none: false,
      }[shape];
      mask[y * SIDE + x] = hide ? 1 : 0;
    }
  }
  paintMask();
}

function brushAt(ev) {
  const c = $("maskcanvas");
  const r = c.getBoundingClientRect();
  const x = Math.floor((ev.clientX - r.left) / r.width * SIDE);
  const y = Math.floor((ev.clientY - r.top) / r.height * SIDE);
  const keep = ev.shiftKey || document.querySelector("input[name=brush]:checked").value === "keep";
  for (let dy = -1; dy <= 1; dy++) {
    for (let dx = -1; dx <= 1; dx++) {
      const yy = y + dy, xx = x + dx;
      if (yy >= 0 && yy < SIDE && xx >= 0 && xx < SIDE) mask[yy * SIDE + xx] = keep ? 0 : 1;
    }
  }
  paintMask();
}

function applyPreset(choice) {
  const p = MODELS[choice].preset;
  $("sampler").value = String(p.sampler);
  $("steps").value = p.steps;
  $("eta").value = p.eta;
  $("clip").checked = p.clip;
  $("guided").checked = p.guided;
  $("weight").value = p.weight;
  $("class").disabled = !choice.startsWith("cond");
}

// URL settings override the preset of the chosen model.
function applyParams() {
  const choice = params.get("model");
  if (choice !== null) {
    if (!(choice in MODELS)) throw new Error(`model=${choice}: choose one of ${Object.keys(MODELS).join(", ")}`);
    $("model").value = choice;
  }
  applyPreset($("model").value);
  const samplers = { ddim: 0, "dpmpp-2m": 1, unipc: 2, ddpm: 3 };
  if (params.has("sampler")) {
    const s = params.get("sampler");
    if (!(s in samplers)) throw new Error(`sampler=${s}: choose one of ${Object.keys(samplers).join(", ")}`);
    $("sampler").value = String(samplers[s]);
  }
  for (const id of ["steps", "eta", "weight", "seed", "class", "resample", "jump"]) {
    if (params.has(id)) $(id).value = params.get(id);
  }
  for (const id of ["clip", "guided", "simd"]) {
    if (params.has(id)) $(id).checked = params.get(id) !== "0";
  }
  if (params.has("digit")) digit = Number(params.get("digit"));
  if (params.has("inpaint")) {
    const m = params.get("inpaint");
    if (!MASKS.includes(m)) throw new Error(`inpaint=${m}: choose one of ${MASKS.join(", ")}`);
    $("inpaint").checked = true;
    setMask(m);
  }
}

function number(id, what, lo, hi, whole) {
  const v = Number($(id).value);
  if (!Number.isFinite(v) || v < lo || v > hi || (whole && !Number.isInteger(v))) {
    throw new Error(`${what} must be ${whole ? "a whole number" : "a number"} from ${lo} to ${hi}, not “${$(id).value}”`);
  }
  return v;
}

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

async function draw() {
  if (running) return;
  running = true;
  $("draw").disabled = true;
  clearError();
  try {
    const choice = $("model").value;
    const spec = MODELS[choice];
    const file = params.get("file") || spec.file;
    setStatus("loading", "loading the model");
    const h = await model(file);
    const guided = $("guided").checked;
    const g = guided && spec.guide ? await model(spec.guide) : -1;
    const conditional = wasm.ddpm_model_classes(h) > 0;
    const inpaint = $("inpaint").checked;
    if (inpaint) {
      if (!digits) throw new Error("the test digits did not load");
      new Uint8Array(wasm.memory.buffer, wasm.ddpm_known_ptr(), LEN).set(digits[digit]);
      new Uint8Array(wasm.memory.buffer, wasm.ddpm_mask_ptr(), LEN).set(mask);
    }
    const steps = number("steps", "Steps", 1, 300, true);
    const total = wasm.ddpm_begin(
      h, g, Number($("sampler").value), steps,
      number("eta", "η", 0, 1, false), $("clip").checked ? 1 : 0,
      guided ? number("weight", "The guidance weight", -100, 100, false) : NaN,
      conditional ? Number($("class").value) : -1,
      number("seed", "The seed", 0, Number.MAX_SAFE_INTEGER, true),
      inpaint ? 1 : 0,
      number("resample", "Resample U", 1, 20, true), number("jump", "Jump j", 1, 50, true),
      $("simd").checked ? 1 : 0,
    );
    if (total < 0) throw new Error(lastError());
    $("kernels").textContent = $("simd").checked && wasm.ddpm_simd128() ? "SIMD128" : "portable";
    $("history").replaceChildren();
    setStatus("running");
    paintF32($("xt"), wasm.ddpm_x_ptr());
    let compute = 0;
    const wall0 = performance.now();
    for (;;) {
      const t0 = performance.now();
      const r = wasm.ddpm_advance();
      compute += performance.now() - t0;
      if (r < 0) throw new Error(lastError());
      if (r === 0) break;
      const done = wasm.ddpm_steps_done();
      paintF32($("xt"), wasm.ddpm_x_ptr());
      const x0 = paintF32($("x0"), wasm.ddpm_x0_ptr());
      const thumb = document.createElement("canvas");
      thumb.width = SIDE; thumb.height = SIDE; thumb.className = "thumb";
      thumb.title = `step ${done}, t = ${wasm.ddpm_timestep()}`;
      paintU8(thumb, x0);
      $("history").appendChild(thumb);
      $("progress").textContent = `step ${done} of ${total}, t = ${wasm.ddpm_timestep()}`;
      $("steptime").textContent = `${(compute / done).toFixed(1)} ms`;
      await nextFrame();
    }
    const wall = performance.now() - wall0;
    const pixels = new Uint8Array(wasm.memory.buffer, wasm.ddpm_pixels_ptr(), LEN).slice();
    paintU8($("xt"), pixels);
    const checksum = "0x" + (wasm.ddpm_checksum() >>> 0).toString(16).padStart(8, "0");
    $("checksum").textContent = checksum;
    $("steptime").textContent = `${(compute / total).toFixed(1)} ms (${total} steps)`;
    $("sampletime").textContent = `${compute.toFixed(0)} ms computing, ${wall.toFixed(0)} ms with one frame drawn per step`;
    computeTimes.push(compute);
    $("sampletime").dataset.computeMs = compute.toFixed(1);
    $("sampletime").dataset.wallMs = wall.toFixed(1);
    $("sampletime").dataset.allMs = computeTimes.map((t) => t.toFixed(1)).join(",");
    if (inpaint) {
      let worst = 0;
      const known = digits[digit];
      for (let i = 0; i < LEN; i++) if (!mask[i]) worst = Math.max(worst, Math.abs(pixels[i] - known[i]));
      $("kept").textContent = `largest change of a kept pixel: ${worst}`;
      $("kept").dataset.worst = String(worst);
    } else {
      $("kept").textContent = "–";
      delete $("kept").dataset.worst;
    }
    $("progress").textContent = `done: ${total} steps`;
    setStatus("done");
  } catch (e) {
    showError(e.message);
  } finally {
    running = false;
    $("draw").disabled = false;
  }
}

async function main() {
  $("model").addEventListener("change", () => applyPreset($("model").value));
  $("draw").addEventListener("click", draw);
  document.querySelectorAll("button[data-mask]").forEach((b) =>
    b.addEventListener("click", () => setMask(b.dataset.mask)));
  const mc = $("maskcanvas");
  let painting = false;
  mc.addEventListener("pointerdown", (e) => { painting = true; brushAt(e); });
  mc.addEventListener("pointermove", (e) => { if (painting) brushAt(e); });
  window.addEventListener("pointerup", () => { painting = false; });
  try {
    await loadModule();
    await loadDigits();
    if (!params.has("inpaint")) setMask("top");
    applyParams();
    paintMask();
    setStatus("ready");
    $("progress").textContent = "ready";
  } catch (e) {
    showError(e.message);
    return;
  }
  // auto=1 draws once on load; repeat=N draws N times (the later ones with the module's code
  // already compiled by the browser's optimizing tier, which is what a second click gets).
  if (params.get("auto") === "1") {
    const repeat = Math.max(1, Math.min(20, Number(params.get("repeat") || 1)));
    for (let k = 0; k < repeat; k++) await draw();
  }
}

main();
