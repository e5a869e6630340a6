// Serves an exported site on 127.0.0.1 and drives headless Chromium over it with
// Playwright: the shader compilation check, the generator page on a fixed noise batch,
// the "New noise" button, the interpolation slider, the digit selector of a
// class-conditional generator, screenshots, and the page in a browser without WebGPU. Everything the pages report goes to OUT/result.json;
// tests/web_export.rs judges it.
//
// usage: node drive.mjs SITE_DIR OUT_DIR NOISE_FILE (NOISE_FILE relative to SITE_DIR)

import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { chromium } from 'playwright-core';

const [site, out, noiseFile] = process.argv.slice(2);
if (!site || !out || !noiseFile) {
  console.error('usage: node drive.mjs SITE_DIR OUT_DIR NOISE_FILE');
  process.exit(2);
}
const executablePath = process.env.GAN_GPU_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.GAN_GPU_BROWSER_TIMEOUT_MS || 300000);

const TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wgsl': 'text/plain',
};

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  const file = join(site, path.endsWith('/') ? `${path}index.html` : path);
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end('not found');
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

// The flags this machine needs: no sandbox as root, and no background network traffic
// on a closed network.
const QUIET = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const consoleLines = [];
async function openPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 800, height: 860 } });
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  return page;
}

const pageState = (page) =>
  page.evaluate(() => {
    const g = window.gan;
    return {
      status: g.status,
      adapter: g.adapter,
      error: g.error,
      mix: g.mix,
      renders: g.renders,
      ms: g.lastMs,
      noise: g.noise ? Array.from(g.noise) : null,
      classes: g.classes,
      labels: g.labels ? Array.from(g.labels) : null,
      images: g.images ? Array.from(g.images) : null,
    };
  });

// Waits until the page has drawn more than `renders` times and is idle (or failed).
const settled = (page, renders) =>
  page.waitForFunction(
    (n) => ['ready', 'error', 'no-webgpu'].includes(window.gan.status) && (window.gan.status !== 'ready' || window.gan.renders > n),
    renders,
    { timeout: TIMEOUT_MS },
  );

const result = { origin, states: {}, console: consoleLines };
const webgpu = await chromium.launch({ executablePath, args: [...QUIET, '--enable-unsafe-webgpu'] });
try {
  const check = await openPage(webgpu, `${origin}/check-shaders.html`);
  await check.waitForFunction(() => window.shaderCheck.status !== 'running', null, { timeout: TIMEOUT_MS });
  result.shaderCheck = await check.evaluate(() => window.shaderCheck);
  await check.screenshot({ path: join(out, 'check-shaders.png'), fullPage: true });

  const page = await openPage(webgpu, `${origin}/index.html?noise=${encodeURIComponent(noiseFile)}`);
  await settled(page, 0);
  result.states.fixed = await pageState(page);
  await page.screenshot({ path: join(out, 'page.png'), fullPage: true });
  if (result.states.fixed.status === 'ready') {
    await page.click('#new-noise');
    await settled(page, result.states.fixed.renders);
    result.states.newNoise = await pageState(page);
    await page.locator('#mix').fill('500');
    await settled(page, result.states.newNoise.renders);
    result.states.halfway = await pageState(page);
    if (result.states.halfway.classes) {
      await page.selectOption('#digit', '7');
      await settled(page, result.states.halfway.renders);
      result.states.digit = await pageState(page);
      await page.screenshot({ path: join(out, 'page-digit.png'), fullPage: true });
    }
  }
} finally {
  await webgpu.close();
}

// Without --enable-unsafe-webgpu, Chromium on Linux offers no adapter.
const plain = await chromium.launch({ executablePath, args: QUIET });
try {
  const page = await openPage(plain, `${origin}/index.html`);
  await page.waitForFunction(() => window.gan.status !== 'loading', null, { timeout: TIMEOUT_MS });
  result.noWebgpu = {
    status: await page.evaluate(() => window.gan.status),
    visible: await page.locator('#no-webgpu').isVisible(),
    text: await page.locator('#no-webgpu').innerText(),
  };
  await page.screenshot({ path: join(out, 'no-webgpu.png'), fullPage: true });
} finally {
  await plain.close();
}
server.close();
await writeFile(join(out, 'result.json'), JSON.stringify(result));
