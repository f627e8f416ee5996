// Gets a database login on a request page in headless Chromium: clicks the button, reads the
// login shown once, then reloads the request page. Reports what it saw as one JSON line.
// usage: node db_login.mjs BASE_URL REQUEST_ID SESSION_COOKIE
import { chromium } from 'playwright-core';

const [base, id, session] = process.argv.slice(2);
const report = { cspViolations: [], consoleErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addCookies([{ name: '__Host-elevate', value: session, url: base, secure: true, httpOnly: true, sameSite: 'Lax' }]);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') report.consoleErrors.push(m.text());
    if (m.text().includes('Content Security Policy')) report.cspViolations.push(m.text());
  });

  await page.goto(`${base}/requests/${id}`);
  await page.click('button:has-text("Get a database login")');
  await page.waitForSelector('#db-login');
  report.heading = (await page.textContent('h1')).replace(/\s+/g, ' ').trim();
  report.user = (await page.textContent('.db-user')).trim();
  report.password = (await page.textContent('.db-password')).trim();
  report.command = (await page.textContent('#db-login pre')).trim();
  await page.goto(`${base}/requests/${id}`);
  report.requestPage = (await page.textContent('#database')).replace(/\s+/g, ' ').trim();
} catch (e) {
  report.error = String(e);
  try { report.failedPage = (await browser.contexts()[0].pages()[0].textContent('main')).replace(/\s+/g, ' ').slice(0, 500); } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
