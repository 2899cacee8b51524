// Drives the blotter page in headless Chromium for the Python test, one JSON command per line on
// stdin, one JSON answer per line on stdout. The test keeps the scenario (it produces the OMS
// events between steps); this script only acts like a user and reads what the page shows.
//
// The browser is the distribution's chromium (CHROMIUM, default /usr/bin/chromium) with a fresh
// profile; playwright-core never downloads one.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-dev-shm-usage',
];

let context = null;
let page = null;
let profileDir = null;
const problems = []; // console errors and warnings, page errors, failed requests

// Data rows of the grid: the center container holds every rendered row once (pinned containers
// repeat them); full-width rows (position lots) live elsewhere and are not data rows.
const ROW_SELECTOR = '.ag-center-cols-container .ag-row[row-id]';

function rowIds(selector) {
  return [...document.querySelectorAll(selector)].map((row) => row.getAttribute('row-id'));
}

function watch(target) {
  target.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      problems.push({ kind: `console.${message.type()}`, text: message.text(), location: message.location() });
    }
  });
  target.on('pageerror', (error) => problems.push({ kind: 'pageerror', text: String(error.stack || error) }));
  target.on('requestfailed', (request) => {
    problems.push({ kind: 'requestfailed', text: `${request.method()} ${request.url()}: ${request.failure()?.errorText}` });
  });
  target.on('response', (response) => {
    if (response.status() >= 400) problems.push({ kind: 'http', text: `${response.status()} ${response.url()}` });
  });
}

const commands = {
  async launch({ width = 1440, height = 900 } = {}) {
    if (context) return { launched: false };
    const started = Date.now();
    profileDir = mkdtempSync(join(tmpdir(), 'blotter-chromium-'));
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width, height },
    });
    return { launched: true, launchMs: Date.now() - started, version: context.browser()?.version() };
  },

  async open({ url, expect = 'connected' }) {
    await commands.launch({});
    // The first page uses the tab the browser opened with; later ones open a new tab, whose
    // sessionStorage (where the page keeps its token) starts empty.
    const blank = page === null ? context.pages()[0] : null;
    page = blank ?? (await context.newPage());
    watch(page);
    const started = Date.now();
    await page.goto(url, { waitUntil: 'load' });
    await page.evaluate(() => {
      // Keep every status line the page shows, so a test can see transient states.
      window.statusLog = [document.querySelector('#status-text').textContent];
      new MutationObserver(() => window.statusLog.push(document.querySelector('#status-text').textContent))
        .observe(document.querySelector('#status-text'), { childList: true, characterData: true, subtree: true });
    });
    await page.waitForSelector(`#status[data-state="${expect}"]`, { timeout: 15000 });
    if (expect === 'connected') await page.waitForSelector('.ag-root-wrapper', { timeout: 15000 });
    return { loadMs: Date.now() - started, url: page.url(), status: await page.textContent('#status-text') };
  },

  async fill({ selector, value }) {
    await page.fill(selector, value);
    return {};
  },

  async tab({ type }) {
    await page.click(`#tab-${type}`);
    await page.waitForSelector(`#tab-${type}[aria-selected="true"]`);
    await page.waitForFunction(() => document.querySelector('#filter-state')?.textContent.startsWith('Applied · snapshot'));
    return {};
  },

  async filter({ logical = 'AND', conditions }) {
    // Start from an empty builder without applying it (the page's Clear button also applies).
    while (await page.locator('.fb-remove').count()) await page.locator('.fb-remove').first().click();
    await page.selectOption('.fb-group >> nth=0 >> .fb-logical >> nth=0', logical);
    for (const { field, operator, value } of conditions) {
      await page.click('.fb-group >> nth=0 >> .fb-add-condition >> nth=0');
      const row = page.locator('.fb-condition').last();
      await row.locator('.fb-field').selectOption(field);
      await row.locator('.fb-operator').selectOption(operator);
      if (value !== undefined) {
        const input = row.locator('.fb-value');
        if ((await input.evaluate((node) => node.tagName)) === 'SELECT') await input.selectOption(value);
        else await input.fill(String(value));
      }
    }
    await page.click('#apply-filter');
    // Applied (snapshot complete) or refused: either way the page says so.
    await page.waitForFunction(() => {
      const state = document.querySelector('#filter-state')?.textContent ?? '';
      return state.startsWith('Applied · snapshot') || state === 'Not applied';
    }, null, { timeout: 10000 });
    return {
      state: await page.textContent('#filter-state'),
      error: (await page.isVisible('#error')) ? await page.textContent('#error') : '',
      message: await page.textContent('#filter-json'),
    };
  },

  async waitRows({ present = [], absent = [], exact = false, timeoutMs = 5000 }) {
    const started = Date.now();
    let matched = true;
    try {
      await page.waitForFunction(({ selector, want, unwanted, only }) => {
        const ids = new Set([...document.querySelectorAll(selector)].map((row) => row.getAttribute('row-id')));
        if (!want.every((id) => ids.has(id)) || unwanted.some((id) => ids.has(id))) return false;
        return !only || ids.size === want.length;
      }, { selector: ROW_SELECTOR, want: present, unwanted: absent, only: exact }, { timeout: timeoutMs, polling: 'raf' });
    } catch (error) {
      if (error.name !== 'TimeoutError') throw error;
      matched = false;
    }
    const at = Date.now();
    return { matched, at, waitedMs: at - started, rows: await page.evaluate(rowIds, ROW_SELECTOR) };
  },

  async cells({ rowId }) {
    return {
      cells: await page.evaluate((id) => Object.fromEntries(
        [...document.querySelectorAll(`.ag-row[row-id="${CSS.escape(id)}"] .ag-cell[col-id]`)]
          .map((cell) => [cell.getAttribute('col-id'), cell.textContent.trim()]),
      ), rowId),
    };
  },

  async click({ selector }) {
    await page.click(selector);
    return {};
  },

  async waitFor({ selector, timeoutMs = 5000 }) {
    await page.waitForSelector(selector, { timeout: timeoutMs });
    return { text: (await page.textContent(selector))?.trim() ?? '' };
  },

  async text({ selectors }) {
    const out = {};
    for (const selector of selectors) {
      out[selector] = (await page.isVisible(selector)) ? (await page.textContent(selector)).trim() : null;
    }
    return { texts: out, url: page.url() };
  },

  async dropConnection() {
    // What a network blip does: the socket closes under the page, which must reconnect.
    await page.evaluate(() => window.blotterPage.stream.ws.close(4000, 'network blip (test)'));
    return {};
  },

  async freezeGrid({ frozen }) {
    // A page whose grid stops keeping up: rows still arrive, but no credits are granted back
    // until it is unfrozen (then the held acknowledgements are replayed in order).
    await page.evaluate((on) => {
      const blotter = window.blotterPage;
      if (on) {
        blotter.heldAcks = [];
        blotter.onApplied = (...args) => blotter.heldAcks.push(args);
      } else {
        delete blotter.onApplied; // back to the prototype's method
        for (const args of blotter.heldAcks.splice(0)) blotter.onApplied(...args);
      }
    }, frozen);
    return {};
  },

  async statusLog() {
    return { log: await page.evaluate(() => window.statusLog) };
  },

  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: false });
    return { path };
  },

  async problems({ clear = false }) {
    const copy = [...problems];
    if (clear) problems.length = 0;
    return { problems: copy };
  },

  async close() {
    if (context) await context.close();
    context = null;
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { cmd, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = { ok: true, ...(await commands[cmd](args)) };
  } catch (error) {
    answer = { ok: false, error: String(error.stack || error) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  if (cmd === 'close') break;
}
await commands.close();
