// End to end: the web app in headless Chromium, with real face videos as the camera.
//
//   node tests/e2e/web.mjs --cli build/facelogin --make-y4m build/tests/make_y4m --web web \
//                          --out build/e2e-artifacts
//
// Under the default (adaptive) liveness policy: Alice (NUAA subject 0001) signs up through the
// page from one recording, logs out, and logs in from another without a challenge (strong
// passive evidence); a recording of her printed photo (NUAA ImposterRaw) is
// refused for liveness, and Bob (subject 0002) trying to log in as Alice is refused. After the
// photo, Alice's next login steps up: the page shows the challenge, and her live recording
// (which cannot answer it) is refused for that. Every page is then checked for accessibility with axe-core
// (serious and critical violations fail). Screenshots of each step go to --out. Exit 77 (skipped) when Chromium, playwright-core
// or ../shared are missing, except under CI, where that is a failure.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = path.resolve(here, '../..');
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));

function skip(reason) {
  console.log(`e2e_web: ${reason}`);
  process.exit(process.env.CI ? 1 : 77);
}

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(chromiumPath)) skip(`no Chromium at ${chromiumPath} (apt-get install chromium)`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  skip('playwright-core is not installed (npm ci --prefix tests/e2e)');
}
const data = process.env.FACELOGIN_DATA_DIR || path.resolve(source, '../shared/data');
const nuaa = path.join(data, 'nuaa');
if (!fs.existsSync(nuaa)) skip(`${nuaa} not found`);
const models = process.env.FACELOGIN_MODEL_DIR || path.join(source, 'models');

const out = path.resolve(args.out || 'e2e-artifacts');
fs.mkdirSync(out, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'facelogin-e2e-'));

// A camera video from one NUAA recording (folder under nuaa/), frames in camera order.
function video(folder, prefix, name) {
  const dir = path.join(nuaa, folder);
  const frames = fs.readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith('.jpg'))
    .sort((a, b) => Number(a.slice(prefix.length, -4)) - Number(b.slice(prefix.length, -4)))
    .map((f) => path.join(dir, f));
  if (frames.length === 0) throw new Error(`no frames ${prefix}* in ${dir}`);
  const file = path.join(work, `${name}.y4m`);
  execFileSync(args['make-y4m'], [file, '15', ...frames]);
  return file;
}

function startServer(extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(args.cli, ['--json', '--models', models, 'serve', '--listen', '127.0.0.1:0',
      '--data', path.join(work, 'data'), '--web', args.web, ...extra],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (chunk) => {
      text += chunk;
      try {
        const doc = JSON.parse(text);
        resolve({ child, url: `http://127.0.0.1:${doc.port}` });
      } catch { /* not all of it yet */ }
    });
    child.on('exit', (code) => reject(new Error(`facelogin serve exited with ${code}`)));
  });
}

async function browserWith(camera) {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-video-capture=${camera}`, '--no-sandbox'],
  });
}

const steps = [];
function step(name) {
  steps.push(name);
  console.log(`e2e_web: ${name}`);
}

const server = await startServer();
let failed = false;
try {
  // Alice signs up from her second NUAA session and logs in from her first, which scores strongly
  // live (the second scores lower: the adaptive policy would step it up).
  const aliceFirst = video('ClientRaw/0001', '0001_00_00_02_', 'alice-2');
  const aliceSecond = video('ClientRaw/0001', '0001_00_00_01_', 'alice-1');
  const bob = video('ClientRaw/0002', '0002_01_00_01_', 'bob');
  const photo = video('ImposterRaw/0001', '0001_00_01_02_', 'alice-photo');

  // Sign up.
  let browser = await browserWith(aliceFirst);
  let page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`browser: ${m.text()}`); });
  step('alice signs up');
  await page.goto(`${server.url}/enroll`);
  await page.getByLabel('Choose a user name').fill('alice');
  await page.getByRole('button', { name: 'Start the camera' }).click();
  await page.waitForFunction(() => document.getElementById('progress').value >= 0.3, null,
    { timeout: 120_000 });
  await page.screenshot({ path: path.join(out, '0-enrolling.png') });
  await page.locator('#done').waitFor({ state: 'visible', timeout: 120_000 });
  const code = await page.locator('#recovery').textContent();
  if (!/^[0-9a-f]{64}$/.test(code)) throw new Error(`no recovery code shown: ${code}`);
  await page.screenshot({ path: path.join(out, '1-enrolled.png') });
  await page.getByRole('button', { name: /I saved it/ }).click();
  await page.waitForURL('**/account');
  await page.getByText('Logged in as alice.').waitFor();
  await page.screenshot({ path: path.join(out, '2-account.png') });
  step('alice logs out');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(`${server.url}/`);
  await browser.close();

  // Log in from another recording.
  browser = await browserWith(aliceSecond);
  page = await browser.newPage();
  step('alice logs in');
  await page.goto(`${server.url}/login`);
  await page.locator('#user').fill('alice');
  // Strong passive evidence in the web app's camera loop: in without a challenge (adaptive).
  let prompted = false;
  page.on('response', async (r) => {
    if (r.url().includes('/frames') && r.request().method() === 'POST') {
      try {
        if ((await r.json()).challenge) prompted = true;
      } catch { /* not JSON: an error page */ }
    }
  });
  await page.getByRole('button', { name: 'Log in with my face' }).click();
  await page.waitForURL('**/account', { timeout: 120_000 });
  await page.getByText('Logged in as alice.').waitFor();
  await page.screenshot({ path: path.join(out, '3-logged-in.png') });
  if (prompted) throw new Error('a strongly live login was asked for the challenge');
  await browser.close();

  // Alice's printed photo held to the camera: refused for liveness.
  browser = await browserWith(photo);
  page = await browser.newPage();
  step('a printed photo of alice tries to log in');
  await page.goto(`${server.url}/login`);
  await page.locator('#user').fill('alice');
  await page.getByRole('button', { name: 'Log in with my face' }).click();
  await page.locator('#error').filter({ hasText: 'not a photo or a screen' })
    .waitFor({ timeout: 120_000 });
  await page.screenshot({ path: path.join(out, '4-photo-refused.png') });
  await browser.close();

  // Someone else.
  browser = await browserWith(bob);
  page = await browser.newPage();
  step('bob tries to log in as alice');
  await page.goto(`${server.url}/login`);
  await page.locator('#user').fill('alice');
  await page.getByRole('button', { name: 'Log in with my face' }).click();
  const error = page.locator('#error');
  await error.filter({ hasText: 'Not logged in' }).waitFor({ timeout: 120_000 });
  await page.screenshot({ path: path.join(out, '5-bob-refused.png') });
  if (page.url().endsWith('/account')) throw new Error('bob reached the account page');
  await browser.close();

  // The default (adaptive) policy steps up after a liveness refusal: alice's next login, from
  // her live recording, is asked for the random challenge in the same attempt. A recording cannot
  // answer it, so it is refused for that, not for its face (the step-up a replay meets).
  step('after the photo, alice\'s live recording is asked for the challenge and refused');
  browser = await browserWith(aliceSecond);
  page = await browser.newPage();
  await page.goto(`${server.url}/login`);
  await page.locator('#user').fill('alice');
  await page.getByRole('button', { name: 'Log in with my face' }).click();
  await page.locator('#challenge').filter({ hasText: /^Step 1 of 3: / })
    .waitFor({ state: 'visible', timeout: 120_000 });
  await page.screenshot({ path: path.join(out, '6-challenge-prompt.png') });
  await page.locator('#error').filter({ hasText: /movement/ }).waitFor({ timeout: 120_000 });
  await page.screenshot({ path: path.join(out, '7-challenge-refused.png') });
  if (page.url().endsWith('/account')) throw new Error('a recording passed the challenge');
  await browser.close();

  // Accessibility: axe-core on every page (CSP bypassed only to inject axe itself).
  step('accessibility of every page');
  const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
  browser = await browserWith(bob);
  const context = await browser.newContext({ bypassCSP: true });
  const problems = [];
  for (const name of ['/', '/enroll', '/login', '/account', '/admin']) {
    page = await context.newPage();
    await page.goto(`${server.url}${name}`);
    await page.waitForLoadState('networkidle');
    await page.addScriptTag({ path: axePath });
    const result = await page.evaluate(async () => window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
    for (const v of result.violations) {
      if (v.impact === 'serious' || v.impact === 'critical') {
        problems.push(`${name}: ${v.id} (${v.impact}): ${v.help} [${v.nodes.map((n) => n.target.join(' ')).join(', ')}]`);
      }
    }
    console.log(`e2e_web: ${name}: ${result.passes.length} axe rules pass, ${result.violations.length} violations`);
    await page.close();
  }
  await browser.close();
  if (problems.length > 0) throw new Error(`accessibility:\n  ${problems.join('\n  ')}`);
  step('done');
} catch (e) {
  failed = true;
  console.error(`e2e_web: FAILED after "${steps.at(-1)}": ${e.message}`);
} finally {
  server.child.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`e2e_web: screenshots in ${out}`);
process.exit(failed ? 1 : 0);
