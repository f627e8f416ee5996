// A passkey in headless Chromium, through the DevTools protocol's virtual authenticator (CTAP2,
// resident keys, user verification): register one on /passkeys, approve a step-up request from
// its page, sign out, and sign in with the passkey. Reports what it saw as one JSON line.
// usage: node passkeys.mjs BASE_URL SESSION_SECRET REQUEST_ID
import { chromium } from 'playwright-core';

const [base, session, requestId] = process.argv.slice(2);
const report = { cspViolations: [], consoleErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addCookies([{ name: '__Host-elevate', value: session, url: base, secure: true, httpOnly: true }]);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') report.consoleErrors.push(m.text());
    if (m.text().includes('Content Security Policy')) report.cspViolations.push(m.text());
  });
  page.on('dialog', (d) => { report.dialog = d.message(); d.dismiss(); });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  await page.goto(`${base}/passkeys`);
  await page.fill('form[data-register] input[name=name]', 'chromium');
  await page.click('button:has-text("Add a passkey")');
  await page.waitForSelector('.passkey-list strong:has-text("chromium")');
  report.registered = (await page.textContent('.passkey-list')).replace(/\s+/g, ' ').trim();
  const shots = process.env.SCREENSHOTS;
  const shoot = async (name) => {
    if (!shots) return;
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  };
  await shoot('passkeys');
  report.credentials = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials
    .map((c) => ({ resident: c.isResidentCredential }));

  await page.goto(`${base}/requests/${requestId}`);
  await page.fill('form[data-step-up] input[name=comment]', 'looked at it');
  await Promise.all([
    page.waitForNavigation(),
    page.click('button:has-text("Approve with a passkey")'),
  ]);
  report.stateAfterApproval = await page.textContent('h1 .state');
  await shoot('approved');
  report.approvals = (await page.textContent('dl.facts')).replace(/\s+/g, ' ');

  await page.click('button:has-text("Sign out")');
  await page.waitForURL(`${base}/login`);
  await shoot('login');
  await Promise.all([
    page.waitForURL(`${base}/dashboard`),
    page.click('button:has-text("Sign in with a passkey")'),
  ]);
  report.dashboardHeading = await page.textContent('h1');
} catch (e) {
  report.error = String(e);
  try { report.failedPage = (await browser.contexts()[0].pages()[0].textContent('main')).replace(/\s+/g, ' ').slice(0, 500); } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
