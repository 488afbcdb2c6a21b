// A real OpenID Connect provider for the tests: panva's certified `oidc-provider`, configured like ProConnect
// (scopes openid email given_name usual_name siret uid, acr eidas1/eidas2, userinfo as a signed JWT, PKCE, logout).
//
// Run by tests/fakes/oidc.py: `node tests/fakes/oidc_provider.mjs CONFIG_JSON`; it listens on 127.0.0.1 on a port the
// system chooses and prints one JSON line {"issuer": ...} once ready. Its login interaction signs in, at once, the
// account the test chose last (POST /_test/login); /_test/settings turns its token endpoint's clock back (its ID
// tokens come out expired) or makes its published keys wrong. These two routes exist only here: they are how a test plays the person and the provider's faults.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] || '{}');
const SCOPES = 'openid email given_name usual_name siret uid';

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}

const key = signingKey('lapins-test-key');
// Published instead of the real key when a test asks: same kid, another key, so signatures do not verify.
const decoy = signingKey('lapins-test-key');
const publicPart = ({ kty, n, e, kid, use, alg }) => ({ kty, n, e, kid, use, alg });

const accounts = new Map(); // sub -> claims
const state = { login: null, tokenClockOffsetSeconds: 0, decoyKeys: false };
const realNow = Date.now;

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.clientId,
      client_secret: config.clientSecret,
      redirect_uris: config.redirectUris,
      post_logout_redirect_uris: config.postLogoutRedirectUris,
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'RS256',
      ...(config.jsonUserinfo ? {} : { userinfo_signed_response_alg: 'RS256' }),
    }],
    jwks: { keys: [key] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    pkce: { required: () => true },
    acrValues: ['eidas1', 'eidas2', 'eidas3'],
    claims: {
      openid: ['sub'], email: ['email', 'email_verified'], given_name: ['given_name'], usual_name: ['usual_name'],
      siret: ['siret'], uid: ['uid'], acr: null, amr: null, auth_time: null, sid: null,
    },
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true }, // ProConnect gives amr when asked this way
      jwtUserinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = `<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>Déconnexion du fournisseur</title></head>
            <body><h1>Se déconnecter du fournisseur d'identité ?</h1>${form}
            <button type="submit" form="op.logoutForm" value="yes" name="logout">Oui, me déconnecter</button></body></html>`;
        },
      },
    },
    ttl: {
      AccessToken: 60, // as ProConnect's
      AuthorizationCode: 30,
      IdToken: 300,
      Interaction: 300,
      Session: 3600,
      Grant: 3600,
    },
    async findAccount(ctx, sub) {
      const claims = accounts.get(sub);
      if (!claims) return undefined;
      return { accountId: sub, async claims() { return { sub, ...claims }; } };
    },
    async loadExistingGrant(ctx) {
      // The person always consents: the grant is made on the spot.
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope(SCOPES);
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>Erreur du fournisseur</h1><pre>${JSON.stringify(out)
        .replace(/</g, '&lt;')}</pre></body></html>`;
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/_test/login' && ctx.method === 'POST') {
      const body = await readJson(ctx.req);
      accounts.set(body.sub, body.claims || {});
      state.login = { accountId: body.sub, amr: body.amr, acr: body.acr };
      ctx.body = { ok: true };
      return;
    }
    if (ctx.path === '/_test/settings' && ctx.method === 'POST') {
      Object.assign(state, await readJson(ctx.req));
      ctx.body = { ok: true };
      return;
    }
    if (ctx.path === '/jwks' && state.decoyKeys) {
      ctx.body = { keys: [publicPart(decoy)] };
      return;
    }
    if (ctx.path === '/token' && state.tokenClockOffsetSeconds) {
      // The tokens are issued as if it were that much earlier (the provider's clocks read Date.now).
      Date.now = () => realNow() + state.tokenClockOffsetSeconds * 1000;
      try { await next(); } finally { Date.now = realNow; }
      return;
    }
    if (ctx.path.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.prompt.name !== 'login' || !state.login) {
        ctx.status = 400;
        ctx.body = `interaction ${details.prompt.name} not handled`;
        return;
      }
      const login = { accountId: state.login.accountId };
      if (state.login.amr) login.amr = state.login.amr;
      if (state.login.acr) login.acr = state.login.acr;
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, { login }, { mergeWithLastSubmission: false }));
      return;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

function readJson(request) {
  return new Promise((resolve, reject) => {
    let data = '';
    request.on('data', (chunk) => { data += chunk; });
    request.on('end', () => { try { resolve(JSON.parse(data || '{}')); } catch (error) { reject(error); } });
    request.on('error', reject);
  });
}

process.on('SIGTERM', () => server.close(() => process.exit(0)));
