// Compiles every shader the export copied and lists getCompilationInfo()'s messages.
// `window.shaderCheck` holds the result for tests: { status, adapter, files, errors }.

import { compileShader, openGpu } from './gan.js';

const check = (window.shaderCheck = { status: 'running', adapter: null, files: [], errors: 0 });
const $ = (id) => document.getElementById(id);

function row(file, messages) {
  const errors = messages.filter((m) => m.type === 'error').length;
  const tr = document.createElement('tr');
  const cells = [
    file,
    errors ? `${errors} error(s)` : 'compiles',
    messages.map((m) => `${m.line}:${m.column} ${m.type}: ${m.message}`).join('\n') || '-',
  ];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  tr.children[1].className = errors ? 'bad' : 'ok';
  tr.children[2].style.whiteSpace = 'pre-wrap';
  return tr;
}

async function main() {
  const gpu = await openGpu();
  if (gpu.problem) {
    throw new Error(gpu.problem);
  }
  check.adapter = gpu.description;
  $('adapter').textContent = `Compiled by ${gpu.description}.`;
  const plan = await (await fetch('plan.json')).json();
  for (const file of plan.shader_files) {
    const { messages } = await compileShader(gpu.device, file);
    check.files.push({ file, messages });
    check.errors += messages.filter((m) => m.type === 'error').length;
    $('results').append(row(file, messages));
  }
  $('summary').textContent = check.errors
    ? `${check.errors} error(s) in ${check.files.length} files.`
    : `All ${check.files.length} files compile.`;
  $('summary').className = check.errors ? 'bad' : 'ok';
  check.status = 'done';
  console.log(`gan-gpu shader check: ${check.errors} error(s) in ${check.files.length} files`);
}

main().catch((e) => {
  check.status = 'error';
  check.error = e.message ?? String(e);
  $('summary').textContent = check.error;
  $('summary').className = 'bad';
  console.error(`gan-gpu shader check: ${check.error}`);
});
