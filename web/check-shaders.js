// Compiles every shader the export copied and lists getCompilationInfo()'s messages,
// then builds every pipeline the trainer builds (plan.json's trainer_pipelines, with
// their override constants and bind-group layouts), since some problems only show at
// pipeline creation. `window.shaderCheck` holds the result for tests.

import { compileShader, createPipeline, fetchOk, openGpu } from './gan.js';

const check = (window.shaderCheck = {
  status: 'running',
  adapter: null,
  files: [],
  errors: 0,
  pipelines: [],
  pipelineErrors: 0,
});
const $ = (id) => document.getElementById(id);

function row(cells, ok) {
  const tr = document.createElement('tr');
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  tr.children[1].className = ok ? 'ok' : 'bad';
  tr.children[2].style.whiteSpace = 'pre-wrap';
  return tr;
}

// The error message of building one pipeline, or null.
async function buildPipeline(device, module, p) {
  device.pushErrorScope('validation');
  try {
    await createPipeline(device, module, p);
  } catch (e) {
    await device.popErrorScope();
    return e.message ?? String(e);
  }
  const error = await device.popErrorScope();
  return error ? error.message : null;
}

async function main() {
  const gpu = await openGpu();
  if (gpu.problem) {
    throw new Error(gpu.problem);
  }
  check.adapter = gpu.description;
  $('adapter').textContent = `Compiled by ${gpu.description}.`;
  const plan = await (await fetchOk('plan.json')).json();
  const modules = new Map();
  for (const file of plan.shader_files) {
    const { module, messages } = await compileShader(gpu.device, file);
    const errors = messages.filter((m) => m.type === 'error').length;
    modules.set(file, errors ? null : module);
    check.files.push({ file, messages });
    check.errors += errors;
    const text = messages.map((m) => `${m.line}:${m.column} ${m.type}: ${m.message}`).join('\n');
    $('results').append(row([file, errors ? `${errors} error(s)` : 'compiles', text || '-'], !errors));
  }
  for (const p of plan.trainer_pipelines) {
    const module = modules.get(p.shader);
    const error = module ? await buildPipeline(gpu.device, module, p) : `${p.shader} does not compile`;
    check.pipelines.push({ ...p, error });
    if (error) check.pipelineErrors += 1;
    const constants = Object.entries(p.constants).map(([k, v]) => `${k}=${v}`).join(' ');
    $('pipelines').append(row([`${p.shader} ${p.entry} ${constants}`, error ? 'fails' : 'builds', error ?? '-'], !error));
  }
  const failed = check.errors + check.pipelineErrors;
  $('summary').textContent = failed
    ? `${check.errors} compilation error(s) in ${check.files.length} files; ${check.pipelineErrors} of ${check.pipelines.length} pipelines fail.`
    : `All ${check.files.length} files compile and all ${check.pipelines.length} pipelines build.`;
  $('summary').className = failed ? 'bad' : 'ok';
  check.status = 'done';
  console.log(`gan-gpu shader check: ${check.errors} error(s) in ${check.files.length} files, ${check.pipelineErrors} of ${check.pipelines.length} pipelines fail`);
}

main().catch((e) => {
  check.status = 'error';
  check.error = e.message ?? String(e);
  $('summary').textContent = check.error;
  $('summary').className = 'bad';
  console.error(`gan-gpu shader check: ${check.error}`);
});
