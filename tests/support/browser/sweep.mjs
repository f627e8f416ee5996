// Visits pages as several people at 1280 and 390 px wide in headless Chromium and reports, per
// page and width: horizontal overflow, Content-Security-Policy violations, console errors and
// axe-core's serious and critical accessibility violations; saves a full-page screenshot of
// each under SHOT_DIR.
// usage: node sweep.mjs BASE_URL SHOT_DIR VISITS_JSON
//   VISITS_JSON: [{"who": "alice", "session": "<cookie value or empty>", "paths": ["/dashboard"]}]
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const [base, shots, visitsJson] = process.argv.slice(2);
const visits = JSON.parse(visitsJson);
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
mkdirSync(shots, { recursive: true });
const report = { pages: [], menuByKeyboard: null, error: null };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  for (const v of visits) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    if (v.session) {
      await context.addCookies([{ name: '__Host-elevate', value: v.session, url: base, secure: true, httpOnly: true, sameSite: 'Lax' }]);
    }
    const page = await context.newPage();
    let csp = [];
    let errors = [];
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) csp.push(m.text());
      else if (m.type() === 'error') errors.push(m.text());
    });
    for (const path of v.paths) {
      for (const width of [1280, 390]) {
        csp = [];
        errors = [];
        await page.setViewportSize({ width, height: 900 });
        const res = await page.goto(base + path, { waitUntil: 'load' });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        // Evaluated through the DevTools protocol, so the page's CSP does not apply to axe.
        await page.evaluate(axeSource);
        const found = await page.evaluate(async () => {
          const r = await window.axe.run(document, { resultTypes: ['violations'] });
          return r.violations
            .filter((x) => x.impact === 'serious' || x.impact === 'critical')
            .map((x) => ({ id: x.id, impact: x.impact, help: x.help, nodes: x.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
        });
        const slug = `${v.who}${path.replace(/[^a-z0-9]+/gi, '-')}-${width}`.replace(/-+$/, '');
        await page.screenshot({ path: `${shots}/${slug}.png`, fullPage: true });
        // An error page's own status is logged as a failed load; that is the page, not a fault.
        const own = `status of ${res.status()} `;
        errors = errors.filter((e) => res.ok() || !(e.startsWith('Failed to load resource') && e.includes(own)));
        report.pages.push({ who: v.who, path, width, status: res.status(), overflow, csp, errors, axe: found });
        if (width === 390 && v.session && report.menuByKeyboard === null) {
          // The phone menu opens from the keyboard: Tab to its toggle, Space.
          let reached = false;
          for (let i = 0; i < 5 && !reached; i++) {
            await page.keyboard.press('Tab');
            reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'menu-toggle');
          }
          if (reached) await page.keyboard.press('Space');
          report.menuByKeyboard = reached && await page.isVisible('header nav a[href="/dashboard"]');
        }
      }
    }
    await context.close();
  }
} catch (e) {
  report.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
