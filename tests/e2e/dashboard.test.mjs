// The dashboard, end to end: a real `corral serve`, a real trainer
// (fixtures/trainer.py: SB3 tables, a worker process, checkpoints, stderr),
// and Debian's chromium driven by playwright-core. The tests run in order
// and share the daemon, the run and the browser; each checks what the page
// shows against what the API, /proc and the cgroup hierarchy say.
//
// CORRAL_BINARY (or CORRAL_BUILD_DIR) names the daemon under test;
// CORRAL_E2E_SCREENSHOTS where the screenshots of each view go.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Daemon, TRAINER, WAIT_MS, alive, cgroupEvents, cgroupProcs, corralBinary,
  isRunProcess, launchBrowser, makeRoot, procStat, removeRoot, runCgroupDir,
  screenshotDir, waitFor,
} from './lib/harness.mjs';

const PYTHON = process.env.CORRAL_E2E_PYTHON || 'python3';
const TEST_TIMEOUT = 120_000 * Number(process.env.CORRAL_E2E_TIMEOUT_SCALE || 1);
const RUN = 'e2e-ppo';
const SUBMITTED = 'e2e-submit';

const binary = corralBinary();
const shots = screenshotDir(binary);
const failures = path.join(path.dirname(binary), 'e2e-failures');
let root;
let daemon;
let ctx; // the browser context most tests use (a fresh profile)
let page; // its page, holding the token from the URL
const extraContexts = new Set();
const pageErrors = [];
// Every process of a run the tests saw: pid -> {starttime, run}, so the
// stop tests (and the clean-up) can tell whether any is left.
const seen = new Map();
const passed = new Set();

// ------------------------------------------------------------ helpers

const yamlFor = (name, extra = '') => `experiments:
  - name: ${name}
    command: [${PYTHON}, ${JSON.stringify(TRAINER)}, --ckpt-dir, "checkpoints/{run}"]
${extra}    stop: {signal: SIGTERM, mode: main, grace: 15s}
    progress: {format: sb3, counter: time/total_timesteps, total: 200000}
    artifacts: {checkpoints: "checkpoints/{run}/*.ckpt", videos: "videos/{run}/*.webm"}
`;

/** A test that only runs when the tests it builds on passed (otherwise it
 *  is skipped, naming them, rather than failing by a timeout of its own). */
function step(name, needs, fn) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    const missing = needs.filter((n) => !passed.has(n));
    if (missing.length) {
      t.skip(`needs: ${missing.join(', ')}`);
      return;
    }
    try {
      await fn(t);
      passed.add(name);
    } catch (e) {
      await failureShot(name);
      if (daemon) t.diagnostic(`daemon log tail:\n${daemon.logTail(15)}`);
      throw e;
    }
  });
  return name;
}

async function failureShot(name) {
  if (!page || page.isClosed()) return;
  try {
    fs.mkdirSync(failures, { recursive: true });
    const file = path.join(failures, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
    await page.screenshot({ path: file, timeout: 5000 });
    process.stderr.write(`# failure screenshot: ${file}\n`);
  } catch { /* the page is gone: nothing to show */ }
}

/** Saves the view as <screenshots>/<name>.png, without a passing toast. */
async function shot(p, name) {
  const toast = p.getByTestId('toast');
  if (await toast.isVisible()) {
    await toast.getByRole('button').first().click({ timeout: 2000 }).catch(() => {});
    await toast.waitFor({ state: 'hidden', timeout: 2000 }).catch(() => {});
  }
  await p.screenshot({ path: path.join(shots, `${name}.png`) });
}

function watchErrors(p) {
  p.on('pageerror', (e) => pageErrors.push(`${p.url()}: ${e.message}`));
}

const row = (p, id) => p.locator(`[data-testid=runs] tr[data-run-id="${id}"]`);
const text = async (loc) => ((await loc.count()) ? (await loc.first().textContent()) || '' : '');

/** Waits for the run's row in the runs list to show `state` with its
 *  emoji, in its state cell and its data-state. */
async function waitState(p, id, state, emoji) {
  const r = row(p, id);
  await waitFor(async () => (await r.getAttribute('data-state', { timeout: 1000 })) === state
    && (await text(r.getByTestId('state'))).includes(emoji),
  `the runs list to show ${id} as ${emoji} ${state}`);
  const cell = await text(r.getByTestId('state'));
  assert.match(cell, new RegExp(`${emoji}\\s*${state}`));
}

/** Remembers `pid` as a process of run `id` if it is one (its environment
 *  names the run). */
function remember(pid, id) {
  const s = procStat(pid);
  if (s && !seen.has(pid) && isRunProcess(pid, s.starttime, id)) {
    seen.set(pid, { starttime: s.starttime, run: id });
  }
}

/** The run's processes as the API lists them, remembered in `seen`. */
async function processesOf(id) {
  const run = await daemon.run(id);
  for (const p of run.processes || []) remember(p.pid, id);
  return run;
}

/** Confirms the dialog after an action button, checking what it asks. */
async function confirm(p, id) {
  const dialog = p.getByTestId('confirm');
  await dialog.waitFor({ state: 'visible' });
  assert.ok((await dialog.textContent()).includes(id), 'the confirmation names the run');
  await p.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
}

/** Waits for the toast to say every string of `has` (an earlier toast
 *  may still show for a moment), then checks it is (not) an error. */
async function waitToast(p, has, { error }) {
  const t = p.getByTestId('toast');
  const said = await waitFor(async () => {
    const s = (await t.count()) ? ((await t.textContent()) || '').trim() : '';
    return has.every((h) => s.includes(h)) && s;
  }, `a toast saying ${has.map((h) => `'${h}'`).join(' and ')}`);
  const cls = (await t.getAttribute('class')) || '';
  assert.equal(cls.split(/\s+/).includes('error'), error,
    `toast class '${cls}' ${error ? 'lacks' : 'has'} 'error': ${said}`);
  return said;
}

/** The run's cgroup directories (one) as its processes' /proc says. */
function cgroupsOf(run) {
  if (run.pause_mechanism !== 'cgroup-v2') return [];
  const dirs = [...new Set((run.processes || []).map((p) => runCgroupDir(p.pid, run.id)))];
  assert.ok(dirs.length === 1 && dirs[0], `every process of ${run.id} is in its cgroup: ${dirs}`);
  return dirs;
}

/** Lets the output pipe drain, then checks the run's stdout.log does not
 *  grow for a while (a frozen trainer prints nothing). */
async function assertStdoutStill(id) {
  let size = daemon.stdoutSize(id);
  await waitFor(async () => {
    await sleep(400);
    const now = daemon.stdoutSize(id);
    const still = now === size;
    size = now;
    return still;
  }, `${id}'s stdout.log to settle`);
  // A trainer that runs prints a table every 0.3 s: five of them would be
  // missing here.
  await sleep(1500);
  assert.equal(daemon.stdoutSize(id), size, `${id}'s stdout.log grew while paused`);
}

// ------------------------------------------------------------ lifecycle

before(async () => {
  root = makeRoot();
  daemon = new Daemon(binary, root);
  await daemon.start();
  const made = await daemon.submit(yamlFor(RUN));
  assert.deepEqual(made.runs.map((r) => r.id), [RUN]);
  ctx = await launchBrowser(path.join(root, 'profile-main'));
});

after(async () => {
  const problems = [];
  const attempt = async (what, fn) => {
    try {
      await fn();
    } catch (e) {
      problems.push(`${what}: ${e.message}`);
    }
  };
  for (const c of [...extraContexts, ctx]) if (c) await attempt('closing chromium', () => c.close());
  if (daemon && daemon.child && !daemon.exit) {
    await attempt('stopping the runs', () => daemon.stopAllRuns());
    await attempt('stopping the daemon', () => daemon.stop());
  }
  // If the daemon had to be SIGKILLed its runs live on: end what is left
  // of the trees the tests saw (by pid, checked against its start time).
  for (const [pid, { starttime, run }] of seen) {
    if (isRunProcess(pid, starttime, run)) {
      problems.push(`process ${pid} outlived the daemon; killed`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone meanwhile */ }
    }
  }
  if (root) removeRoot(root);
  if (problems.length) process.stderr.write(`# clean-up: ${problems.join('; ')}\n`);
});

// A test process that dies early must not leave a daemon behind.
process.on('exit', () => {
  if (daemon && daemon.child && !daemon.exit) {
    try {
      daemon.child.kill('SIGTERM');
    } catch { /* already gone */ }
  }
});

// ------------------------------------------------------------ the tests

const SERVED = step('the daemon serves the dashboard at /', [], async () => {
  const res = await fetch(`${daemon.url}/`);
  const body = await res.text();
  assert.equal(res.status, 200, `GET / answered ${res.status}: ${body.slice(0, 200)}`);
  assert.match(res.headers.get('content-type') || '', /text\/html/);
  assert.match(body, /<div id="app">/, 'the page has the app root');
  // The page itself needs no token; the API does.
  assert.equal((await daemon.api('GET', '/api/v1/runs', undefined, { token: null })).status, 401);
});

const LISTED = step('the runs list shows the running run as 🟢', [SERVED], async () => {
  page = ctx.pages()[0] || (await ctx.newPage());
  watchErrors(page);
  await page.goto(`${daemon.url}/#token=${daemon.token}`);
  await row(page, RUN).waitFor({ state: 'visible', timeout: WAIT_MS });
  await waitState(page, RUN, 'running', '🟢');
  assert.equal((await daemon.run(RUN)).state, 'running');
  // The node panel shows the machine as GET /node reports it.
  const node = await daemon.call('GET', '/api/v1/node');
  const panel = page.getByTestId('node');
  await waitFor(async () => (await text(panel)).includes(`${node.cpus} cores`),
    `the node panel to show ${node.cpus} cores`);
  assert.match(await text(panel), /Memory.*GiB/);
  // The token left the address bar once the page had it.
  assert.ok(!page.url().includes(daemon.token), `token still in ${page.url()}`);
  // Let the progress column fill in before the picture (cosmetic only).
  await waitFor(async () => (await daemon.run(RUN)).progress.fraction > 0, 'progress');
  await row(page, RUN).locator('.progress').waitFor({ timeout: 5000 }).catch(() => {});
  await shot(page, 'runs');
});

const PAUSED = step('Pause asks for confirmation, then freezes every process of the run',
  [LISTED], async () => {
    const r = row(page, RUN);
    await r.getByTestId('select').check();
    const pause = page.getByTestId('pause');
    await waitFor(() => pause.isEnabled(), 'Pause to be enabled for a running run');
    const running = await processesOf(RUN);
    assert.ok(running.processes.length >= 2, 'the trainer runs with its worker');
    // Cancel changes nothing.
    await pause.click();
    await page.getByTestId('confirm').waitFor({ state: 'visible' });
    await page.getByTestId('confirm-cancel').click();
    await page.getByTestId('confirm').waitFor({ state: 'hidden' });
    assert.equal((await daemon.run(RUN)).state, 'running', 'Cancel leaves the run running');
    assert.equal(await row(page, RUN).getAttribute('data-state'), 'running');

    await pause.click();
    await page.getByTestId('confirm').waitFor({ state: 'visible' });
    await shot(page, 'confirm');
    await confirm(page, RUN);
    await waitState(page, RUN, 'paused', '⏸️');
    await waitToast(page, [RUN, 'paused'], { error: false });

    const run = await processesOf(RUN);
    assert.equal(run.state, 'paused');
    const pids = run.processes.map((p) => p.pid);
    assert.ok(pids.length >= 2, `the paused tree still has its processes: ${pids}`);
    for (const p of run.processes) assert.equal(p.frozen, true, `API: pid ${p.pid} frozen`);
    if (run.pause_mechanism === 'cgroup-v2') {
      // The freezer leaves tasks in S/D, not T: ask the cgroup itself.
      for (const dir of cgroupsOf(run)) {
        assert.equal(cgroupEvents(dir).frozen, 1, `${dir}/cgroup.events says frozen 1`);
        assert.equal(fs.readFileSync(path.join(dir, 'cgroup.freeze'), 'utf8').trim(), '1');
        // Every task in it is one the API lists, and none runs.
        for (const pid of cgroupProcs(dir)) {
          assert.ok(pids.includes(pid), `pid ${pid} of ${dir} is in the run's processes`);
          const s = procStat(pid);
          assert.ok(s && s.state !== 'R', `frozen pid ${pid} is not running (${s && s.state})`);
        }
      }
    } else {
      for (const pid of pids) assert.equal(procStat(pid).state, 'T', `pid ${pid} is stopped (T)`);
    }
    await assertStdoutStill(RUN);

    await waitFor(async () => (await pause.isDisabled()) && page.getByTestId('resume').isEnabled(),
      'Pause disabled and Resume enabled for the paused run');
  });

step('Resume thaws the tree and the run is 🟢 again', [PAUSED], async () => {
  const resume = page.getByTestId('resume');
  const size = daemon.stdoutSize(RUN);
  await resume.click();
  await confirm(page, RUN);
  await waitState(page, RUN, 'running', '🟢');
  await waitToast(page, [RUN, 'resumed'], { error: false });

  const run = await processesOf(RUN);
  assert.equal(run.state, 'running');
  const pids = run.processes.map((p) => p.pid);
  assert.ok(pids.length >= 2);
  for (const p of run.processes) assert.equal(p.frozen, false, `API: pid ${p.pid} not frozen`);
  for (const dir of cgroupsOf(run)) assert.equal(cgroupEvents(dir).frozen, 0, `${dir} thawed`);
  for (const pid of pids) {
    const s = procStat(pid);
    assert.ok(s && ['R', 'S'].includes(s.state), `pid ${pid} runs or sleeps (${s && s.state})`);
  }
  await waitFor(() => daemon.stdoutSize(RUN) > size, 'the trainer to print again');
  await waitFor(async () => (await page.getByTestId('pause').isEnabled())
    && page.getByTestId('resume').isDisabled(), 'Pause enabled and Resume disabled again');
});

step('a refused action shows the server\'s exact message', [LISTED], async () => {
  if ((await daemon.run(RUN)).state === 'paused') await daemon.call('POST', `/api/v1/runs/${RUN}/resume`);
  // A second tab whose view of the runs goes stale: no event stream, and
  // once `stale` is set the list it polls is the last one it saw. Someone
  // else (the API, like `corral pause`) pauses the run meanwhile, so the
  // tab still offers Pause and the daemon refuses it.
  const other = await ctx.newPage();
  watchErrors(other);
  let stale = false;
  let lastList = null;
  await other.route('**/api/v1/events**', (route) => route.abort());
  await other.route(/\/api\/v1\/runs(\?[^/]*)?$/, async (route) => {
    if (route.request().method() !== 'GET') return route.continue();
    if (stale && lastList) {
      return route.fulfill({ status: 200, contentType: 'application/json', body: lastList });
    }
    const res = await route.fetch();
    lastList = await res.text();
    return route.fulfill({ response: res, body: lastList });
  });
  try {
    await other.goto(`${daemon.url}/#token=${daemon.token}`);
    await waitState(other, RUN, 'running', '🟢');
    await row(other, RUN).getByTestId('select').check();
    stale = true;
    await daemon.call('POST', `/api/v1/runs/${RUN}/pause`);
    const refused = await daemon.api('POST', `/api/v1/runs/${RUN}/pause`);
    assert.equal(refused.status, 409);
    const message = refused.body.error.message;
    assert.match(message, /paused/);

    await other.getByTestId('pause').click();
    await confirm(other, RUN);
    await waitToast(other, [message], { error: true });
  } finally {
    await other.close();
    if ((await daemon.run(RUN)).state === 'paused') await daemon.call('POST', `/api/v1/runs/${RUN}/resume`);
  }
  await waitState(page, RUN, 'running', '🟢');
});

const RUN_PAGE = step('the Logs tab shows new lines as they come, search filters them, auto-scroll yields to the user',
  [LISTED], async () => {
    await row(page, RUN).getByTestId('run-link').click();
    await page.waitForURL(new RegExp(`#/runs/${RUN}`));
    await page.getByTestId('tab-logs').click();
    const lines = page.locator('[data-testid=log] .line');
    await waitFor(async () => (await lines.count()) > 0, 'log lines');
    const first = await lines.count();
    await waitFor(async () => (await lines.count()) > first, `more than ${first} log lines`);
    await waitFor(async () => (await page.locator('[data-testid=log] .line[data-stream=stderr]').count()) > 0,
      'a stderr line');
    assert.ok((await lines.allTextContents()).some((l) => l.includes('total_timesteps')));
    await shot(page, 'logs');

    const needle = 'warning: iteration';
    await page.getByTestId('log-search').fill(needle);
    await waitFor(async () => {
      const all = await lines.allTextContents();
      return all.length > 0 && all.every((l) => l.includes(needle));
    }, `only lines with '${needle}'`);
    const filtered = await lines.count();
    await page.getByTestId('log-search').fill('');
    await waitFor(async () => (await lines.count()) > filtered, 'every line back after clearing the search');

    // Auto-scroll: at the bottom the view follows new lines; scrolled up
    // it stays where the user put it, until Follow brings it back.
    const box = page.getByTestId('log');
    const atBottom = () => box.evaluate((b) => b.scrollHeight - b.scrollTop - b.clientHeight < 24);
    const grows = async (what) => {
      const n = await lines.count();
      await waitFor(async () => (await lines.count()) > n, what);
    };
    await grows('new lines at the bottom');
    await waitFor(atBottom, 'the log to follow new lines');
    await box.evaluate((b) => { b.scrollTop = 0; });
    const follow = page.getByRole('button', { name: /Follow/ });
    await follow.waitFor({ state: 'visible' });
    await grows('new lines while scrolled up');
    await waitFor(async () => /\d+ new/.test(await follow.textContent()), 'the Follow button to count new lines');
    assert.equal(await box.evaluate((b) => b.scrollTop), 0, 'scrolled up, the view did not move');
    await follow.click();
    await waitFor(atBottom, 'Follow to jump to the bottom');
    await grows('new lines after Follow');
    await waitFor(atBottom, 'the log to follow again');
    assert.equal(await follow.count(), 0, 'the Follow button is gone at the bottom');
  });

step('the Progress tab draws charts and lists the checkpoints', [RUN_PAGE], async () => {
  await page.getByTestId('tab-progress').click();
  await page.locator('[data-testid=charts] .uplot canvas').first()
    .waitFor({ state: 'attached', timeout: WAIT_MS });
  await page.locator('[data-testid=charts] [data-metric="rollout/ep_rew_mean"] .uplot canvas')
    .waitFor({ state: 'attached', timeout: WAIT_MS });
  const names = await waitFor(async () => {
    const a = await daemon.call('GET', `/api/v1/runs/${RUN}/artifacts`);
    return a.checkpoints.length && a.checkpoints.map((c) => c.name);
  }, 'a checkpoint');
  assert.ok(names.every((n) => n.startsWith(`checkpoints/${RUN}/`) && n.endsWith('.ckpt')), names.join());
  await waitFor(async () => {
    const shown = await page.getByTestId('artifacts').textContent();
    return names.some((n) => shown.includes(n));
  }, `the artifacts list to show one of ${names.join(', ')}`);
  await shot(page, 'progress');
});

step('a video the run writes plays in the Progress tab', [RUN_PAGE], async () => {
  // Chromium records a real WebM itself (a canvas through MediaRecorder),
  // so the test needs no video encoder on the machine.
  const webm = Buffer.from(await page.evaluate(async () => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 160, height: 120 });
    const g = canvas.getContext('2d');
    const rec = new MediaRecorder(canvas.captureStream(25), { mimeType: 'video/webm' });
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((resolve) => (rec.onstop = resolve));
    let frame = 0;
    const paint = setInterval(() => {
      g.fillStyle = `hsl(${(frame++ * 25) % 360}, 70%, 50%)`;
      g.fillRect(0, 0, 160, 120);
    }, 40);
    rec.start(200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    rec.stop();
    await stopped;
    clearInterval(paint);
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }), 'base64');
  assert.ok(webm.length > 1000, `MediaRecorder made a WebM (${webm.length} bytes)`);
  const cwd = (await daemon.run(RUN)).cwd;
  const dir = path.join(cwd, 'videos', RUN);
  fs.mkdirSync(dir, { recursive: true });
  // Written aside, then renamed: the run's watcher sees a whole file.
  fs.writeFileSync(path.join(dir, '.episode-1.tmp'), webm);
  fs.renameSync(path.join(dir, '.episode-1.tmp'), path.join(dir, 'episode-1.webm'));

  await page.getByTestId('tab-progress').click();
  const video = page.locator('[data-testid=artifacts] video');
  await video.first().waitFor({ state: 'attached', timeout: WAIT_MS });
  // Loaded through the daemon (?access_token=, Range): the browser knows
  // the frame size only once it has read the file's header.
  const size = await waitFor(() => video.first().evaluate((v) =>
    v.readyState >= 1 && v.videoWidth > 0 && [v.videoWidth, v.videoHeight]), 'the video to load its metadata');
  assert.deepEqual(size, [160, 120]);
  const src = await video.first().getAttribute('src');
  assert.match(src, /\/artifacts\/videos%2Fe2e-ppo%2Fepisode-1\.webm\?access_token=/);
  const played = await video.first().evaluate(async (v) => {
    v.muted = true;
    await v.play();
    await new Promise((resolve) => setTimeout(resolve, 600));
    v.pause();
    return v.currentTime;
  });
  assert.ok(played > 0, `the video played (currentTime ${played})`);
});

step('the Resources tab lists every process of the tree', [RUN_PAGE], async () => {
  await page.getByTestId('tab-resources').click();
  const rows = page.locator('[data-testid=processes] tr[data-pid]');
  await waitFor(async () => (await rows.count()) >= 2, 'at least 2 processes');
  await waitFor(async () => {
    const byNumber = (a, b) => a - b;
    const shown = (await rows.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-pid')))))
      .sort(byNumber);
    const api = (await processesOf(RUN)).processes.map((p) => p.pid).sort(byNumber);
    return JSON.stringify(shown) === JSON.stringify(api) && shown;
  }, 'the page to list the pids the API lists');
  const run = await daemon.run(RUN);
  assert.ok((await page.locator('[data-testid=processes]').textContent()).includes(String(run.pid)),
    'the main process is listed');
  await shot(page, 'resources');
});

step('without a token the dashboard asks for it, and the token works', [SERVED], async () => {
  const fresh = await launchBrowser(path.join(root, 'profile-no-token'));
  extraContexts.add(fresh);
  try {
    const p = fresh.pages()[0] || (await fresh.newPage());
    watchErrors(p);
    await p.goto(`${daemon.url}/`);
    const dialog = p.getByTestId('token-dialog');
    await dialog.waitFor({ state: 'visible', timeout: WAIT_MS });
    await shot(p, 'token-dialog');
    // A wrong token is refused with the server's message, and the dialog stays.
    const refusal = (await daemon.api('GET', '/api/v1/node', undefined, { token: 'not-the-token' })).body;
    await p.getByTestId('token-input').fill('not-the-token');
    await p.getByTestId('token-save').click();
    await waitFor(async () => (await dialog.textContent()).includes(refusal.error.message),
      `the dialog to say '${refusal.error.message}'`);
    assert.ok(await dialog.isVisible());
    await p.getByTestId('token-input').fill(daemon.token);
    await p.getByTestId('token-save').click();
    await dialog.waitFor({ state: 'hidden', timeout: WAIT_MS });
    await row(p, RUN).waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.ok(!(await dialog.isVisible()));
  } finally {
    extraContexts.delete(fresh);
    await fresh.close();
  }
});

step('the Submit page shows a YAML error at its line, then submits valid YAML',
  [LISTED], async () => {
    await page.evaluate(() => { location.hash = '#/submit'; });
    const yaml = page.getByTestId('yaml');
    await yaml.waitFor({ state: 'visible' });
    // An invalid duration; the daemon names line and column.
    const bad = yamlFor(SUBMITTED).replace('grace: 15s', 'grace: soon');
    const badLine = bad.split('\n').findIndex((l) => l.includes('grace: soon')) + 1;
    const expected = await daemon.api('POST', '/api/v1/experiments?dry_run=1', { spec: bad, base_dir: daemon.workDir });
    assert.equal(expected.status, 422, JSON.stringify(expected.body));
    const message = expected.body.error.message;
    assert.ok(message.includes(`line ${badLine}`), message);

    // Uploaded, not typed: the file lands in the editor.
    await page.getByTestId('yaml-file').setInputFiles({
      name: 'experiments.yaml', mimeType: 'application/yaml', buffer: Buffer.from(bad) });
    await waitFor(async () => (await yaml.inputValue()) === bad, 'the uploaded file in the editor');
    await page.getByTestId('validate').click();
    const errors = page.getByTestId('submit-errors');
    await waitFor(async () => (await errors.textContent()).includes(message),
      `the error list to show '${message}'`);
    assert.match(await errors.textContent(), new RegExp(`line ${badLine}\\b`));
    await shot(page, 'submit');

    const good = yamlFor(SUBMITTED, `    cwd: ${JSON.stringify(daemon.workDir)}\n`);
    await yaml.fill(good);
    await page.getByTestId('validate').click();
    // The error list empties once the daemon accepts the dry run.
    await waitFor(async () => (await errors.textContent()).trim() === '', 'the error list to empty');
    assert.equal((await daemon.call('GET', '/api/v1/runs')).runs.some((r) => r.id === SUBMITTED), false,
      'validating creates nothing');
    await page.getByTestId('submit').click();
    await waitFor(async () => /#\/?$/.test(page.url()), 'the runs list after submitting');
    await row(page, SUBMITTED).waitFor({ state: 'visible', timeout: WAIT_MS });
    await waitState(page, SUBMITTED, 'running', '🟢');
    await waitToast(page, [SUBMITTED], { error: false });
    const run = await processesOf(SUBMITTED);
    assert.equal(run.cwd, daemon.workDir);
  });

step('Stop asks for confirmation, ends the run 🔴 stopped, and leaves no process', [LISTED],
  async () => {
    await page.evaluate(() => { location.hash = '#/'; });
    const r = row(page, RUN);
    await r.waitFor({ state: 'visible' });
    // The list again, now with two runs and their resources (the picture
    // LISTED took is overwritten; waiting for RSS is cosmetic only).
    await waitFor(async () => (await r.locator('td').last().textContent()).trim() !== '0 B',
      'RSS in the list', { timeout: 8000 }).catch(() => {});
    await shot(page, 'runs');
    const run = await processesOf(RUN);
    assert.ok(['running', 'paused'].includes(run.state), run.state);
    const dirs = cgroupsOf(run);
    for (const dir of dirs) for (const pid of cgroupProcs(dir)) remember(pid, RUN);
    const tree = [...seen].filter(([, v]) => v.run === RUN);

    await r.getByTestId('select').check();
    const stop = page.getByTestId('stop');
    await waitFor(() => stop.isEnabled(), 'Stop to be enabled');
    await stop.click();
    await confirm(page, RUN);
    await waitToast(page, [RUN, 'stopping'], { error: false });
    await waitState(page, RUN, 'stopped', '🔴');

    const ended = await daemon.run(RUN);
    assert.equal(ended.state, 'stopped');
    assert.equal(ended.reason, 'user');
    assert.equal(ended.exit_code, 0, `the trainer exits 0 on SIGTERM: ${ended.message}`);
    await waitFor(() => tree.every(([pid, { starttime }]) => !alive(pid, starttime)),
      `every process of the tree (${tree.map(([pid]) => pid).join(', ')}) to be gone`);
    for (const dir of dirs) {
      if (fs.existsSync(dir)) assert.equal(cgroupProcs(dir).length, 0, `${dir} is empty`);
    }
    assert.equal((ended.processes || []).length, 0, 'the API lists no process');
    // A stopped run offers neither Stop nor Pause nor Resume.
    await waitFor(async () => (await stop.isDisabled()) && (await page.getByTestId('pause').isDisabled())
      && page.getByTestId('resume').isDisabled(), 'every action disabled for the stopped run');
  });

step('the dashboard raised no uncaught script error', [LISTED], async () => {
  assert.deepEqual(pageErrors, []);
});

step('SIGTERM stops the daemon and the runs it still has', [], async () => {
  const active = (await daemon.call('GET', '/api/v1/runs')).runs
    .filter((r) => !['stopped', 'finished', 'failed'].includes(r.state));
  for (const r of active) await processesOf(r.id);
  const left = [...seen].filter(([, v]) => active.some((r) => r.id === v.run));
  if (active.length) assert.ok(left.length > 0, 'the active runs have processes to watch');
  if (ctx) await ctx.close();
  ctx = null;
  const exit = await daemon.stop();
  assert.ok(!exit.killed, 'the daemon exited within its bound on SIGTERM');
  assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
    `the daemon's exit; log:\n${daemon.logTail()}`);
  const log = fs.readFileSync(daemon.logPath, 'utf8');
  assert.doesNotMatch(log, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
  await waitFor(() => left.every(([pid, { starttime }]) => !alive(pid, starttime)),
    'the processes of the runs the daemon stopped to be gone');
  if (active.some((r) => r.id === SUBMITTED)) {
    const exitRecord = path.join(daemon.stateDir, 'runs', SUBMITTED, 'exit');
    assert.ok(fs.existsSync(exitRecord), 'the stopped run has its exit record');
  }
});
