// A real OpenID provider (panva/oidc-provider) for elevate's SSO tests.
// usage: node provider.mjs PORT REDIRECT_URI
// Logs in whichever test account `GET /test/next?account=ID[&tamper_nonce=1]` named last, without
// a login form, and grants the requested scopes.
import http from 'node:http';
import Provider from 'oidc-provider';

// stdout carries only "ready"; the provider's development notices go to stderr, quietly.
const quiet = (...args) => {
  const text = args.join(' ');
  if (!text.startsWith('oidc-provider') && !text.includes('attention.js')) process.stderr.write(`${text}\n`);
};
console.log = quiet;
console.info = quiet;
console.warn = quiet;

const [port, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const accounts = {
  alice: { sub: 'alice', email: 'alice@acme.example', email_verified: true, groups: ['engineering', 'oncall'] },
  newbie: { sub: 'newbie', email: 'newbie@acme.example', email_verified: true, groups: ['sre'] },
  mallory: { sub: 'mallory', email: 'mallory@acme.example', email_verified: false, groups: ['sre'] },
  // Issue 13 item 15: a look-alike of alice with a zero-width space, and alice spelled loudly.
  twin: { sub: 'twin', email: 'alice\u200b@acme.example', email_verified: true, groups: ['sre'] },
  loud: { sub: 'loud', email: 'Alice@ACME.Example', email_verified: true, groups: ['engineering', 'oncall'] },
};

let next = { account: 'alice', tamperNonce: false };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'elevate',
    client_secret: 'test-client-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  cookies: { keys: ['elevate-test-cookie-key'] },
  findAccount: async (ctx, id) => accounts[id] && { accountId: id, claims: async () => accounts[id] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === '/test/next') {
      next = { account: url.searchParams.get('account'), tamperNonce: url.searchParams.get('tamper_nonce') === '1' };
      res.end('ok');
      return;
    }
    if (url.pathname.startsWith('/interaction/')) {
      const interaction = await provider.interactionDetails(req, res);
      if (next.tamperNonce) {
        // The ID token will carry a nonce the relying party never sent, correctly signed.
        interaction.params.nonce = 'not-the-nonce-elevate-sent';
        await interaction.save(interaction.exp - Math.floor(Date.now() / 1000));
      }
      const grant = new provider.Grant({ accountId: next.account, clientId: interaction.params.client_id });
      grant.addOIDCScope('openid email groups');
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId: next.account }, consent: { grantId } },
        { mergeWithLastSubmission: false });
      return;
    }
    provider.callback()(req, res);
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'));
