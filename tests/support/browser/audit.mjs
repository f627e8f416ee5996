// Opens the auditor's page in headless Chromium as a signed-in auditor (session cookie given),
// filters by action through the form, follows a row's request link, downloads the filtered
// export, and reports what it saw as one JSON line.
// usage: node audit.mjs BASE_URL SESSION_SECRET ACTION
import { chromium } from 'playwright-core';

const [base, session, action] = process.argv.slice(2);
const report = { cspViolations: [], consoleErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  await context.addCookies([{ name: '__Host-elevate', value: session, url: base, secure: true, httpOnly: true, sameSite: 'Lax' }]);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') report.consoleErrors.push(m.text());
    if (m.text().includes('Content Security Policy')) report.cspViolations.push(m.text());
  });

  await page.goto(`${base}/audit`);
  report.title = await page.title();
  report.verified = await page.textContent('#verification .tag');
  report.rowsBefore = await page.locator('tbody tr').count();
  await page.fill('input[name=action]', action);
  await page.click('button:has-text("Filter")');
  await page.waitForURL(/action=/);
  report.actions = await page.locator('table').first().locator('tbody tr td:nth-child(4)').allTextContents();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('a:has-text("Download these events")'),
  ]);
  report.downloadName = download.suggestedFilename();
  const path = await download.path();
  const fs = await import('node:fs');
  report.downloadLines = fs.readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l).action);
  await page.click('tbody tr td a[href^="/requests/"]');
  await page.waitForURL(/\/requests\/[0-9a-f-]{36}$/);
  report.requestPage = await page.textContent('h1');
} catch (e) {
  report.error = String(e);
  try { report.failedPage = (await browser.contexts()[0].pages()[0].textContent('main')).replace(/\s+/g, ' ').slice(0, 500); } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
