// Replays the generator plan written by `gan-gpu export-web` on WebGPU.
//
// This file knows no layer and no kernel: plan.json lists every dispatch the Rust
// executor recorded (shader file, entry point, override constants, bound buffers, grid)
// and every uniform's bytes. We create the same buffers, compile the same shaders/*.wgsl,
// and dispatch them in the same order, in one compute pass per forward pass.

export const PLAN_FORMAT = 'gan-gpu-web-plan-v1';

// The adapter and a device on it, or `problem`: why there is none, in words for the user.
export async function openGpu() {
  if (!('gpu' in navigator)) {
    return { problem: 'navigator.gpu is missing: this browser, or this page\'s origin, has no WebGPU.' };
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    return { problem: 'navigator.gpu.requestAdapter() found no adapter: WebGPU is disabled here, or no GPU supports it.' };
  }
  const device = await adapter.requestDevice();
  return { adapter, device, description: describeAdapter(adapter.info ?? {}) };
}

export function describeAdapter(info) {
  const name = [info.vendor, info.architecture, info.device, info.description]
    .filter(Boolean)
    .join(' ');
  const label = name || 'an adapter that gives no name';
  return info.isFallbackAdapter ? `${label} (software fallback adapter)` : label;
}

// fetch() that turns an HTTP error status into an Error naming the URL.
export async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  }
  return response;
}

// Tensors of a safetensors file (F32 only), by name: { shape, data: Float32Array }.
export function parseSafetensors(buffer, url) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 8) {
    throw new Error(`${url}: ${buffer.byteLength} bytes, too short for a safetensors file`);
  }
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > buffer.byteLength) {
    throw new Error(`${url}: header of ${headerLength} bytes overruns the file`);
  }
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLength)));
  const tensors = new Map();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (entry.dtype !== 'F32') {
      throw new Error(`${url}: tensor ${name} has dtype ${entry.dtype}, expected F32`);
    }
    const [begin, end] = entry.data_offsets;
    const start = 8 + headerLength + begin;
    if (start + (end - begin) > buffer.byteLength) {
      throw new Error(`${url}: tensor ${name} overruns the file`);
    }
    // slice() copies, so the data is 4-byte aligned whatever the header length.
    tensors.set(name, { shape: entry.shape, data: new Float32Array(buffer.slice(start, 8 + headerLength + end)) });
  }
  return tensors;
}

// Compiles shaders/<file> and returns its module with getCompilationInfo()'s messages.
export async function compileShader(device, file, base = './') {
  const code = await (await fetchOk(`${base}shaders/${file}`)).text();
  const module = device.createShaderModule({ label: file, code });
  const info = await module.getCompilationInfo();
  const messages = info.messages.map((m) => ({
    type: m.type,
    line: m.lineNum,
    column: m.linePos,
    message: m.message,
  }));
  return { module, messages };
}

function describeMessages(file, messages) {
  return messages.map((m) => `${file}:${m.line}:${m.column}: ${m.type}: ${m.message}`).join('\n');
}

const ACCESS = {
  uniform: { type: 'uniform' },
  read: { type: 'read-only-storage' },
  read_write: { type: 'storage' },
};

// A compute pipeline with an explicit layout: `access` lists each binding of group 0 as
// 'uniform', 'read' or 'read_write', as the Rust launchers declare it.
export async function createPipeline(device, module, { shader, entry, constants, access }) {
  const label = `${shader}::${entry}`;
  const layout = device.createBindGroupLayout({
    label,
    entries: access.map((a, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: ACCESS[a] })),
  });
  const pipeline = await device.createComputePipelineAsync({
    label,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: entry, constants },
  });
  return { pipeline, layout };
}

export class Generator {
  // Loads plan.json, the weights and the shaders from `base` and builds every buffer,
  // pipeline and bind group once.
  static async load(device, base = './') {
    const plan = await (await fetchOk(`${base}plan.json`)).json();
    if (plan.format !== PLAN_FORMAT) {
      throw new Error(`${base}plan.json: format ${plan.format}, this page reads ${PLAN_FORMAT}; export the site again`);
    }
    const weightsUrl = `${base}${plan.weights}`;
    const weights = parseSafetensors(await (await fetchOk(weightsUrl)).arrayBuffer(), weightsUrl);

    const modules = new Map();
    for (const file of new Set(plan.dispatches.map((d) => d.shader))) {
      const { module, messages } = await compileShader(device, file, base);
      if (messages.some((m) => m.type === 'error')) {
        throw new Error(`shaders/${file} does not compile here:\n${describeMessages(file, messages)}`);
      }
      modules.set(file, module);
    }

    device.pushErrorScope('validation');
    const buffers = plan.buffers.map((b) => {
      if (b.uniform) {
        const buffer = device.createBuffer({
          label: b.label,
          size: b.bytes,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
        device.queue.writeBuffer(buffer, 0, new Uint32Array(b.uniform));
        return buffer;
      }
      const buffer = device.createBuffer({
        label: b.label,
        size: b.bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      });
      if (b.tensor) {
        const tensor = weights.get(b.tensor);
        if (!tensor) throw new Error(`${weightsUrl}: no tensor ${b.tensor}`);
        if (tensor.data.byteLength > b.bytes) {
          throw new Error(`${weightsUrl}: tensor ${b.tensor} holds ${tensor.data.byteLength} bytes, its buffer ${b.bytes}`);
        }
        device.queue.writeBuffer(buffer, 0, tensor.data);
      }
      return buffer;
    });

    const pipelines = new Map();
    const steps = [];
    for (const d of plan.dispatches) {
      const key = JSON.stringify([d.shader, d.entry, d.constants, d.bindings.map((b) => b.access)]);
      if (!pipelines.has(key)) {
        const access = d.bindings.map((b) => b.access);
        pipelines.set(key, await createPipeline(device, modules.get(d.shader), { ...d, access }));
      }
      const { pipeline, layout } = pipelines.get(key);
      const bindGroup = device.createBindGroup({
        layout,
        entries: d.bindings.map((b, i) => ({ binding: i, resource: { buffer: buffers[b.buffer] } })),
      });
      steps.push({ pipeline, bindGroup, groups: d.groups });
    }
    const error = await device.popErrorScope();
    if (error) throw new Error(`building the generator's pipelines: ${error.message}`);
    return new Generator(device, plan, buffers, steps);
  }

  constructor(device, plan, buffers, steps) {
    this.device = device;
    this.plan = plan;
    this.batch = plan.batch;
    this.noiseDim = plan.noise_dim;
    this.imageSide = plan.image_side;
    this.noise = buffers[plan.noise_buffer];
    this.image = buffers[plan.image_buffer];
    // A class-conditional generator also reads the digit of each image.
    this.classes = plan.classes ?? null;
    this.labels = plan.labels_buffer == null ? null : buffers[plan.labels_buffer];
    this.steps = steps;
    this.imageBytes = this.batch * this.imageSide * this.imageSide * 4;
    this.staging = device.createBuffer({
      label: 'image readback',
      size: this.imageBytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.queue = Promise.resolve();
  }

  // Digits for `noise` (batch x noiseDim, row-major), and for a class-conditional
  // generator `labels` (batch class numbers), as batch x side x side values in [-1, 1].
  // Calls run one after another: they share the buffers.
  generate(noise, labels = null) {
    const run = this.queue.then(() => this.#forward(noise, labels));
    this.queue = run.catch(() => {});
    return run;
  }

  async #forward(noise, labels) {
    const expected = this.batch * this.noiseDim;
    if (noise.length !== expected) {
      throw new Error(`noise holds ${noise.length} values, the generator takes ${this.batch} x ${this.noiseDim} = ${expected}`);
    }
    if (this.labels && (!labels || labels.length !== this.batch)) {
      throw new Error(`this generator draws the digit it is given: it needs ${this.batch} labels`);
    }
    const device = this.device;
    device.pushErrorScope('validation');
    device.queue.writeBuffer(this.noise, 0, noise);
    if (this.labels) device.queue.writeBuffer(this.labels, 0, Uint32Array.from(labels));
    const encoder = device.createCommandEncoder({ label: 'generator forward' });
    const pass = encoder.beginComputePass({ label: 'generator forward' });
    for (const step of this.steps) {
      pass.setPipeline(step.pipeline);
      pass.setBindGroup(0, step.bindGroup);
      pass.dispatchWorkgroups(...step.groups);
    }
    pass.end();
    encoder.copyBufferToBuffer(this.image, 0, this.staging, 0, this.imageBytes);
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new Error(`running the generator: ${error.message}`);
    await this.staging.mapAsync(GPUMapMode.READ);
    const images = new Float32Array(this.staging.getMappedRange().slice(0));
    this.staging.unmap();
    return images;
  }
}
