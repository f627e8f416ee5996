// Gets an SSH certificate on a request page in headless Chromium: uploads a .pub file (the page's
// script fills the box), submits, downloads the certificate. Reports what it saw as one JSON line.
// usage: node certificate.mjs BASE_URL REQUEST_ID SESSION_COOKIE PUBKEY_FILE
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';

const [base, id, session, pubFile] = process.argv.slice(2);
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

  await page.goto(`${base}/requests/${id}`);
  report.heading = (await page.textContent('h1')).replace(/\s+/g, ' ').trim();
  await page.setInputFiles('input[type=file][data-fills=public_key]', pubFile);
  await page.waitForFunction(() => document.getElementById('public_key').value.length > 0);
  report.filledFromFile = (await page.inputValue('#public_key')) === readFileSync(pubFile, 'utf8').trim();
  await page.click('button:has-text("Get certificate")');
  await page.waitForURL(/#cert-[0-9]+$/);
  report.url = page.url();
  report.sshCommand = await page.textContent('.cert pre');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('a:has-text("Download")'),
  ]);
  report.downloadName = download.suggestedFilename();
  report.downloaded = readFileSync(await download.path(), 'utf8');
} catch (e) {
  report.error = String(e);
  try { report.failedPage = (await browser.contexts()[0].pages()[0].textContent('main')).replace(/\s+/g, ' ').slice(0, 500); } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
