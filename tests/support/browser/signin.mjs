// Signs in to a demo-mode elevate through the demo outbox in headless Chromium, the way a person
// would, and reports what it saw as one JSON line.
// usage: node signin.mjs BASE_URL TENANT EMAIL
import { chromium } from 'playwright-core';

const [base, tenant, email] = process.argv.slice(2);
const report = { cspViolations: [], consoleErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') report.consoleErrors.push(m.text());
    if (m.text().includes('Content Security Policy')) report.cspViolations.push(m.text());
  });

  await page.goto(`${base}/login`);
  report.loginTitle = await page.title();
  report.stylesheetApplied = await page.evaluate(
    () => getComputedStyle(document.querySelector('.topbar')).borderBottomStyle === 'solid');
  await page.fill('input[name=tenant]', tenant);
  await page.fill('input[name=email]', email);
  await page.click('button[type=submit]');
  report.sentHeading = await page.textContent('h1');

  await page.goto(`${base}/dev/outbox`);
  await page.click('text=Open the link');
  await page.click('button:has-text("Sign in")');
  await page.waitForURL(`${base}/dashboard`);
  report.dashboardHeading = await page.textContent('h1');

  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === '__Host-elevate');
  report.sessionCookie = session && { secure: session.secure, httpOnly: session.httpOnly, sameSite: session.sameSite, path: session.path };

  await page.goto(`${base}/profile`);
  report.profileText = await page.textContent('main');

  // Request access through the form (the demo's prod-shell needs a ticket).
  await page.goto(`${base}/requests/new`);
  await page.fill('input[name=duration]', '30m');
  await page.fill('textarea[name=justification]', 'browser test');
  await page.fill('input[name=ticket]', 'INC-1');
  await page.click('button:has-text("Request")');
  await page.waitForURL(/\/requests\/[0-9a-f-]{36}$/);
  report.requestState = await page.textContent('h1 .state');

  await page.click('button:has-text("Sign out")');
  await page.waitForURL(`${base}/login`);
  await page.goto(`${base}/dashboard`);
  report.afterSignOutUrl = page.url();
} catch (e) {
  report.error = String(e);
  try { report.failedPage = (await browser.contexts()[0].pages()[0].textContent('main')).replace(/\s+/g, ' ').slice(0, 500); } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
