// The page: a grid of digits from noise, a button for new noise, and a slider that
// interpolates between two noise batches; for a class-conditional generator, a selector
// of the digit to draw (or all, one row per digit). `window.gan` exposes the page's state
// (noise, labels, digits, status) so tests and curious users can read what was drawn.
//
// `?noise=FILE` starts from a fixed noise batch (little-endian f32, batch x noise_dim)
// instead of random noise.

import { Generator, fetchOk, openGpu } from './gan.js';

const state = (window.gan = {
  status: 'loading',
  adapter: null,
  error: null,
  noise: null,
  classes: null,
  labels: null,
  images: null,
  mix: 0,
  renders: 0,
  lastMs: null,
});

const $ = (id) => document.getElementById(id);

function showError(message) {
  state.status = 'error';
  state.error = message;
  $('error-text').textContent = message;
  $('error').hidden = false;
  console.error(`gan-gpu: ${message}`);
}

// N(0, 1) by Box-Muller.
function normalNoise(length) {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i += 2) {
    const u = 1 - Math.random();
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * Math.random();
    out[i] = r * Math.cos(theta);
    if (i + 1 < length) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

// Spherical interpolation row by row: Gaussian noise lives near a sphere, and a straight
// line between two samples passes through its less likely interior.
function slerpRows(a, b, t, dim) {
  if (t === 0) return a.slice();
  if (t === 1) return b.slice();
  const out = new Float32Array(a.length);
  for (let row = 0; row < a.length; row += dim) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = row; i < row + dim; i++) {
      dot += a[i] * b[i];
      na += a[i] * a[i];
      nb += b[i] * b[i];
    }
    const omega = Math.acos(Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb))));
    const [wa, wb] =
      Math.sin(omega) < 1e-6
        ? [1 - t, t]
        : [Math.sin((1 - t) * omega) / Math.sin(omega), Math.sin(t * omega) / Math.sin(omega)];
    for (let i = row; i < row + dim; i++) out[i] = wa * a[i] + wb * b[i];
  }
  return out;
}

// Digits in [-1, 1] to a grid of grayscale cells with a one-pixel gap.
function draw(canvas, images, grid, side) {
  const cell = side + 1;
  canvas.width = grid * cell + 1;
  canvas.height = grid * cell + 1;
  const ctx = canvas.getContext('2d');
  const pixels = ctx.createImageData(canvas.width, canvas.height);
  pixels.data.fill(0);
  for (let n = 0; n < grid * grid; n++) {
    const x0 = (n % grid) * cell + 1;
    const y0 = Math.floor(n / grid) * cell + 1;
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const v = images[(n * side + y) * side + x];
        const byte = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
        const at = ((y0 + y) * canvas.width + x0 + x) * 4;
        pixels.data[at] = byte;
        pixels.data[at + 1] = byte;
        pixels.data[at + 2] = byte;
        pixels.data[at + 3] = 255;
      }
    }
  }
  ctx.putImageData(pixels, 0, 0);
}

async function loadNoise(url, length) {
  const noise = new Float32Array(await (await fetchOk(url)).arrayBuffer());
  if (noise.length !== length) {
    throw new Error(`?noise=${url}: ${noise.length} values, the generator takes ${length}`);
  }
  return noise;
}

async function main() {
  const gpu = await openGpu();
  if (gpu.problem) {
    state.status = 'no-webgpu';
    state.error = gpu.problem;
    $('no-webgpu-reason').textContent = gpu.problem;
    $('no-webgpu').hidden = false;
    $('adapter').textContent = 'No WebGPU adapter.';
    console.log(`gan-gpu: no WebGPU: ${gpu.problem}`);
    return;
  }
  state.adapter = gpu.description;
  $('adapter').textContent = `Running on ${gpu.description}.`;
  gpu.device.lost.then((info) => showError(`The GPU device was lost (${info.reason}): ${info.message}`));

  const generator = await Generator.load(gpu.device);
  const length = generator.batch * generator.noiseDim;
  const fixed = new URLSearchParams(location.search).get('noise');
  state.classes = generator.classes;
  if (generator.classes) {
    const select = $('digit');
    for (let d = 0; d < generator.classes; d++) select.add(new Option(String(d), String(d)));
    $('digit-controls').hidden = false;
  }
  // The chosen digit for every cell, or with "all" row r draws digit r (mod classes).
  const labelsFor = () => {
    if (!generator.classes) return null;
    const choice = $('digit').value;
    const grid = generator.plan.grid;
    return Array.from({ length: generator.batch }, (_, i) =>
      choice === 'all' ? Math.floor(i / grid) % generator.classes : Number(choice),
    );
  };
  let noiseA = fixed ? await loadNoise(fixed, length) : normalNoise(length);
  let noiseB = normalNoise(length);

  // One forward pass at a time; slider moves during one coalesce into the next.
  let busy = false;
  let again = false;
  async function render() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        const mix = Number($('mix').value) / 1000;
        const noise = slerpRows(noiseA, noiseB, mix, generator.noiseDim);
        const start = performance.now();
        const labels = labelsFor();
        const images = await generator.generate(noise, labels);
        const ms = performance.now() - start;
        draw($('digits'), images, generator.plan.grid, generator.imageSide);
        $('mix-value').textContent = mix.toFixed(2);
        $('timing').textContent = `${generator.batch} digits in ${ms.toFixed(1)} ms (${generator.plan.dispatches.length} dispatches, one submission).`;
        Object.assign(state, { noise, labels, images, mix, lastMs: ms, renders: state.renders + 1 });
      } while (again);
      state.status = 'ready';
    } catch (e) {
      showError(e.message ?? String(e));
    } finally {
      busy = false;
    }
  }

  $('new-noise').addEventListener('click', () => {
    noiseA = normalNoise(length);
    noiseB = normalNoise(length);
    $('mix').value = 0;
    state.status = 'rendering';
    render();
  });
  $('mix').addEventListener('input', () => {
    state.status = 'rendering';
    render();
  });
  $('digit').addEventListener('change', () => {
    state.status = 'rendering';
    render();
  });
  $('app').hidden = false;
  await render();
  console.log(`gan-gpu: ready on ${gpu.description} (${state.lastMs.toFixed(1)} ms per forward pass)`);
}

main().catch((e) => showError(e.message ?? String(e)));
