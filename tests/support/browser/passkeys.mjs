// Passkeys in headless Chromium, through the DevTools protocol's virtual authenticator (CTAP2,
// resident keys, user verification), one browser context and authenticator per person:
// each approver registers a passkey on /passkeys and approves the request from its page; then
// the requester registers one, signs out and signs in with it. Reports one JSON line.
// usage: node passkeys.mjs BASE_URL REQUEST_ID REQUESTER_SESSION APPROVER_SESSION...
import { chromium } from 'playwright-core';

const [base, requestId, requesterSession, ...approverSessions] = process.argv.slice(2);
const report = { cspViolations: [], consoleErrors: [], approvers: [], overflow: [] };
const shots = process.env.SCREENSHOTS;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

// A signed-in person in a context of their own, with a virtual authenticator.
async function person(session) {
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
  return { page, cdp, authenticatorId };
}

// At both widths: no horizontal page scroll (recorded in report.overflow), and a screenshot
// when SCREENSHOTS names a directory.
async function shoot(page, name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    if (wide > width) report.overflow.push(`${name} at ${width}px is ${wide}px wide`);
    if (shots) await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function register(p, name) {
  await p.page.goto(`${base}/passkeys`);
  await p.page.fill('form[data-register] input[name=name]', name);
  await p.page.click('button:has-text("Add a passkey")');
  await p.page.waitForSelector(`.passkey-list strong:has-text("${name}")`);
  const credentials = (await p.cdp.send('WebAuthn.getCredentials', { authenticatorId: p.authenticatorId })).credentials;
  return { list: (await p.page.textContent('.passkey-list')).replace(/\s+/g, ' ').trim(), resident: credentials.map((c) => c.isResidentCredential) };
}

try {
  for (const [i, session] of approverSessions.entries()) {
    const p = await person(session);
    const registered = await register(p, `approver ${i + 1}`);
    if (i === 0) await shoot(p.page, 'passkeys');
    await p.page.goto(`${base}/requests/${requestId}`);
    await p.page.fill('form[data-step-up] input[name=comment]', 'looked at it');
    await Promise.all([
      p.page.waitForNavigation(),
      p.page.click('button:has-text("Approve with a passkey")'),
    ]);
    report.approvers.push({
      registered,
      state: await p.page.textContent('h1 .state'),
      approvals: (await p.page.textContent('dl.facts')).replace(/\s+/g, ' '),
    });
    if (i === approverSessions.length - 1) {
      await shoot(p.page, 'approved');
      // On a phone the nav is a menu that opens without script.
      await p.page.setViewportSize({ width: 390, height: 900 });
      report.menuHidden = !(await p.page.isVisible('nav a[href="/passkeys"]'));
      await p.page.click('label.menu-button');
      report.menuOpens = await p.page.isVisible('nav a[href="/passkeys"]');
      await p.page.setViewportSize({ width: 1280, height: 900 });
    }
  }

  const requester = await person(requesterSession);
  report.requesterRegistered = await register(requester, 'laptop');
  await requester.page.click('button:has-text("Sign out")');
  await requester.page.waitForURL(`${base}/login`);
  // Where the email field offers passkeys in autofill, the browser's autofill signs in (the
  // virtual authenticator picks the one passkey); otherwise the button does.
  const autofill = await requester.page.waitForURL(`${base}/dashboard`, { timeout: 5000 })
    .then(() => true, () => false);
  if (autofill) {
    report.signedInBy = 'autofill';
  } else {
    await Promise.all([
      requester.page.waitForURL(`${base}/dashboard`),
      requester.page.click('button:has-text("Sign in with a passkey")'),
    ]);
    report.signedInBy = 'button';
  }
  report.dashboardHeading = await requester.page.textContent('h1');
} catch (e) {
  report.error = String(e);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    report.failedPage = (await pages[pages.length - 1].textContent('main')).replace(/\s+/g, ' ').slice(0, 500);
  } catch {}
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
